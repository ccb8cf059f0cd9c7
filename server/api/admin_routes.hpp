#pragma once
// Platform administration, admin keys only: teams (POST/GET /v1/teams), API keys (POST/GET
// /v1/keys, DELETE /v1/keys/{id}, POST /v1/keys/{id}/rotate) and the audit trail of every admin
// change (GET /v1/audit). Key changes take effect without a restart: in this process at once, in
// the others within auth.key_cache_ms.
#include "db/pool.hpp"
#include "http/router.hpp"

namespace labelbroker::api {

void register_admin_routes(http::Router& router, db::ConnectionPool& pool);

}  // namespace labelbroker::api
