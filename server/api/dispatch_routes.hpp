#pragma once
// Routes that act on dispatch: vendor callbacks (POST /v1/callbacks/{vendor_id}) and a team's
// cancel (POST /v1/jobs/{id}/cancel).
#include "db/pool.hpp"
#include "http/router.hpp"
#include "jobs/engine.hpp"

namespace labelbroker::api {

void register_dispatch_routes(http::Router& router, db::ConnectionPool& pool, jobs::Dispatch& dispatch);

}  // namespace labelbroker::api
