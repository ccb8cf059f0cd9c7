#pragma once
// GET /v1/vendors: the configured vendors with kind, capabilities and health.
#include "db/pool.hpp"
#include "http/router.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::api {

void register_vendor_routes(http::Router& router, db::ConnectionPool& pool, const vendors::VendorSet& vendors);

}  // namespace labelbroker::api
