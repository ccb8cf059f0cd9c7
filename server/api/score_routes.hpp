#pragma once
// GET /v1/vendors/scores and GET /v1/concentration: the dashboard's view of vendor quality, cost,
// speed and market concentration, computed from hourly rollups, cached briefly and served with an
// ETag so pollers get 304 when nothing changed. Readable by every role.
#include "config/config.hpp"
#include "db/pool.hpp"
#include "http/router.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::api {

void register_score_routes(http::Router& router, db::ConnectionPool& pool, const vendors::VendorSet& vendors,
                           const config::QualityConfig& quality);

}  // namespace labelbroker::api
