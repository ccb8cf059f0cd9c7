#pragma once
// GET /v1/vendors: the configured vendors with kind, capabilities, health, routing state (enabled,
// weight, circuit breaker). PATCH /v1/vendors/{id} (admin): {"enabled": bool, "weight": number}
// overrides the configuration in every broker process; {"enabled": false} or {"weight": 0} drains
// the vendor (no new work; the rebalancer moves its unstarted work).
#include "db/pool.hpp"
#include "http/router.hpp"
#include "jobs/engine.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::api {

void register_vendor_routes(http::Router& router, db::ConnectionPool& pool, const vendors::VendorSet& vendors,
                            jobs::Dispatch& dispatch);

}  // namespace labelbroker::api
