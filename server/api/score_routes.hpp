#pragma once
// GET /v1/vendors/scores and GET /v1/concentration: the dashboard's view of vendor quality, cost,
// speed and market concentration, computed from hourly rollups, cached briefly and served with an
// ETag so pollers get 304 when nothing changed. Readable by every role. Scores also carry what an
// ops dashboard shows beside them (breaker and drain state, the team's spend per vendor this
// month, its jobs in flight); concentration carries the share caps and shares over time.
#include "config/config.hpp"
#include "db/pool.hpp"
#include "http/router.hpp"
#include "jobs/engine.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::api {

// `dispatch` gives each vendor's breaker and drain state and the share caps.
void register_score_routes(http::Router& router, db::ConnectionPool& pool, const vendors::VendorSet& vendors,
                           jobs::Dispatch& dispatch, const config::QualityConfig& quality);

}  // namespace labelbroker::api
