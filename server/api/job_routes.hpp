#pragma once
// The job API a team uses: POST/GET /v1/jobs, GET /v1/jobs/{id}, POST /v1/jobs/{id}/items,
// POST /v1/jobs/{id}/start, GET /v1/jobs/{id}/results. Cancel lives with the other dispatch
// controls (api/dispatch_routes). The two upload routes take bodies up to limits.body_limit_bytes;
// the others keep the server's limit.
#include "config/config.hpp"
#include "db/pool.hpp"
#include "http/router.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::api {

void register_job_routes(http::Router& router, db::ConnectionPool& pool, const vendors::VendorSet& vendors,
                         const config::JobsConfig& limits);

}  // namespace labelbroker::api
