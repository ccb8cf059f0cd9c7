#pragma once
// A team's reusable gold sets: POST /v1/gold-sets (submitter), GET /v1/gold-sets and
// GET /v1/gold-sets/{id} (viewer). Responses describe a set (name, task type, labels, size) but
// never its items or answers: gold that leaves the broker is gold a vendor could learn. Jobs use
// a set through "gold_set" in POST /v1/jobs (api/job_routes). The create route takes bodies up to
// limits.body_limit_bytes, like the job uploads.
#include "config/config.hpp"
#include "db/pool.hpp"
#include "http/router.hpp"

namespace labelbroker::api {

void register_gold_routes(http::Router& router, db::ConnectionPool& pool, const config::JobsConfig& limits);

}  // namespace labelbroker::api
