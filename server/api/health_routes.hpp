#pragma once
// GET /healthz, GET /readyz, GET /v1/version.
#include "db/pool.hpp"
#include "http/router.hpp"
#include "http/server.hpp"

namespace labelbroker::api {

struct HealthDependencies {
  db::ConnectionPool& pool;
  http::Lifecycle& lifecycle;
  int expected_schema_version;
};

void register_health_routes(http::Router& router, HealthDependencies deps);

}  // namespace labelbroker::api
