#pragma once
// An in-process labelbroker HTTP server on a free port, with the real API routes and a pool
// pointing at `database_url` (an unreachable URL is fine for tests that do not need the database).
#include <memory>
#include <string>

#include "api/metrics_routes.hpp"
#include "api/routes.hpp"
#include "db/pool.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "jobs/engine.hpp"
#include "support/loopback_server.hpp"

namespace labelbroker::testing {

inline http::ServerOptions test_server_options() {
  auto o = loopback_server_options(2, 4);
  o.shutdown_grace = std::chrono::seconds(30);
  return o;
}

class TestServer {
 public:
  explicit TestServer(http::ServerOptions options = test_server_options(),
                      std::string database_url = "postgresql://nobody@127.0.0.1:1/none",
                      int expected_schema_version = 1, config::JobsConfig jobs_config = {},
                      std::vector<config::VendorConfig> vendor_configs = {},
                      const datasets::FileCache* dataset_files = nullptr)
      : pool_(make_pool(std::move(database_url))),
        dispatch_(std::make_unique<jobs::Dispatch>(*pool_, vendors_, vendor_configs)),
        // Serves /metrics as production does; its refresher is not started (no database reads in
        // the background of tests that do not ask for them).
        metrics_(std::make_unique<api::MetricsService>(*pool_, *dispatch_, nullptr, config::MetricsConfig{},
                                                       config::QualityConfig{})),
        options_(std::move(options)) {
    api::register_api(router_, {*pool_, lifecycle_, expected_schema_version, vendors_, *dispatch_, jobs_config, {},
                                dataset_files, metrics_.get()});
  }

  http::Router& router() { return router_; }
  // Vendors are empty unless a test sets them before start() (GET /v1/vendors reads them).
  vendors::VendorSet& vendors() { return vendors_; }
  http::Lifecycle& lifecycle() { return lifecycle_; }

  // Call after adding extra routes.
  void start() {
    server_ = std::make_unique<http::Server>(options_, router_, lifecycle_);
    server_->start();
  }
  http::Server& server() { return *server_; }
  std::uint16_t port() const { return server_->port(); }

 private:
  static std::unique_ptr<db::ConnectionPool> make_pool(std::string url) {
    db::PoolOptions p;
    p.url = std::move(url);
    p.size = 2;
    p.connect_timeout = std::chrono::milliseconds(1000);
    p.acquire_timeout = std::chrono::milliseconds(2000);
    return std::make_unique<db::ConnectionPool>(p);
  }

  std::unique_ptr<db::ConnectionPool> pool_;
  vendors::VendorSet vendors_;
  std::unique_ptr<jobs::Dispatch> dispatch_;
  std::unique_ptr<api::MetricsService> metrics_;
  http::Lifecycle lifecycle_;
  http::Router router_;
  http::ServerOptions options_;
  std::unique_ptr<http::Server> server_;  // destroyed first: it uses the router and pool
};

}  // namespace labelbroker::testing
