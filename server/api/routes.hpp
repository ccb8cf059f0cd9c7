#pragma once
// Everything the v1 API serves, registered on one router: the service and the in-process test
// server both call this, so tests exercise exactly what production serves.
#include "config/config.hpp"
#include "datasets/file_cache.hpp"
#include "db/pool.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "jobs/engine.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::api {

class MetricsService;

struct ApiDependencies {
  db::ConnectionPool& pool;
  http::Lifecycle& lifecycle;
  int expected_schema_version;
  const vendors::VendorSet& vendors;
  jobs::Dispatch& dispatch;  // callbacks and cancel record through it
  config::JobsConfig jobs = {};
  config::QualityConfig quality = {};
  const datasets::FileCache* dataset_files = nullptr;  // built versions on local disk, if any
  MetricsService* metrics = nullptr;                   // set: GET /metrics is served on this router
};

void register_api(http::Router& router, const ApiDependencies& deps);

}  // namespace labelbroker::api
