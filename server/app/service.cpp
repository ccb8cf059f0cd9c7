#include "app/service.hpp"

#include <algorithm>
#include <filesystem>
#include <thread>
#include <unistd.h>

#include <pqxx/connection>

#include "api/auth.hpp"
#include "api/metrics_routes.hpp"
#include "api/routes.hpp"
#include "app/cli.hpp"
#include "common/build_info.hpp"
#include "common/log.hpp"
#include "datasets/file_cache.hpp"
#include "db/migrations.hpp"
#include "db/pool.hpp"
#include "db/probe.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "jobs/engine.hpp"
#include "jobs/webhook_delivery.hpp"
#include "metrics/http_metrics.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::app {
namespace {

// Per user, so that brokers run by different users on one machine do not share (or fight over)
// files; the versions' UUIDs keep processes of one user apart.
std::string default_dataset_cache_dir() {
  std::error_code ec;
  auto base = std::filesystem::temp_directory_path(ec);
  if (ec) base = "/tmp";
  return (base / ("labelbroker-datasets-" + std::to_string(::getuid()))).string();
}


// Connects for schema work, retrying while the database starts up (common in compose and CI).
std::unique_ptr<pqxx::connection> connect_with_retry(const config::Config& cfg) {
  const auto options = pool_options(cfg);
  const auto deadline = std::chrono::steady_clock::now() + cfg.database.startup_wait;
  auto pause = std::chrono::milliseconds(200);
  while (true) {
    try {
      return std::make_unique<pqxx::connection>(db::with_connection_options(options.url, options));
    } catch (const pqxx::broken_connection& e) {
      if (std::chrono::steady_clock::now() + pause >= deadline) {
        common::log::error("database unreachable",
                           {{"database", common::log::redact_url(options.url)}, {"error", e.what()}});
        return nullptr;
      }
      common::log::info("waiting for the database", {{"database", common::log::redact_url(options.url)}});
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(2000));
    }
  }
}

// Applies (or, with migrate_on_start off, only verifies) migrations. Returns an exit code.
int prepare_schema(const config::Config& cfg, bool apply) {
  auto connection = connect_with_retry(cfg);
  if (!connection) return kExitFailure;
  try {
    db::MigrationReport report = apply ? db::apply_migrations(*connection, db::builtin_migrations())
                                       : db::verify_migrations(*connection, db::builtin_migrations());
    common::log::info("schema ready", {{"schema_version", report.schema_version},
                                       {"applied_now", report.applied.size()},
                                       {"pending", report.pending}});
    return kExitOk;
  } catch (const db::MigrationError& e) {
    common::log::error("refusing to start: schema mismatch", {{"error", e.what()}});
    std::fprintf(stderr, "labelbroker: %s\n", e.what());
    return kExitSchemaMismatch;
  } catch (const std::exception& e) {
    common::log::error("migration failed", {{"error", e.what()}});
    std::fprintf(stderr, "labelbroker: migration failed: %s\n", e.what());
    return kExitFailure;
  }
}

http::ServerOptions server_options(const config::Config& cfg) {
  http::ServerOptions o;
  o.host = cfg.listen.host;
  o.port = cfg.listen.port;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.io_threads = cfg.http.io_threads > 0 ? cfg.http.io_threads : cores;
  o.worker_threads = cfg.http.worker_threads;
  o.body_limit_bytes = cfg.http.body_limit_bytes;
  o.header_limit_bytes = cfg.http.header_limit_bytes;
  o.header_timeout = cfg.http.header_timeout;
  o.body_timeout = cfg.http.body_timeout;
  o.idle_timeout = cfg.http.idle_timeout;
  o.write_timeout = cfg.http.write_timeout;
  o.drain_delay = cfg.http.drain_delay;
  o.shutdown_grace = cfg.http.shutdown_grace;
  o.access_log = cfg.log.access_log;
  return o;
}

vendors::AdapterContext adapter_context(vendors::HttpRuntime& runtime, const config::Config& cfg,
                                        const std::string& public_url) {
  return vendors::AdapterContext{runtime, public_url + "/v1/callbacks", cfg.source, config::process_env()};
}

}  // namespace

db::PoolOptions pool_options(const config::Config& cfg) {
  db::PoolOptions options;
  options.url = cfg.database.url.reveal();
  options.size = static_cast<std::size_t>(cfg.database.pool_size);
  options.connect_timeout = cfg.database.connect_timeout;
  options.statement_timeout = cfg.database.statement_timeout;
  options.acquire_timeout = cfg.database.acquire_timeout;
  return options;
}

void validate_vendors(const config::Config& cfg) {
  vendors::HttpRuntime runtime;
  vendors::VendorRegistry registry;
  vendors::register_builtin_vendors(registry);
  vendors::VendorSet set(registry, cfg.vendors, adapter_context(runtime, cfg, "http://localhost"));
}

int migrate(const config::Config& cfg) {
  return prepare_schema(cfg, /*apply=*/true);
}

int serve(const config::Config& cfg) {
  common::log::info("starting", {{"version", std::string(common::build_version())},
                                 {"commit", std::string(common::build_commit())},
                                 {"config", cfg.source},
                                 {"database", common::log::redact_url(cfg.database.url.reveal())}});
  if (int code = prepare_schema(cfg, cfg.database.migrate_on_start); code != kExitOk) return code;

  db::ConnectionPool pool(pool_options(cfg));
  http::Lifecycle lifecycle;
  http::Router router;
  metrics::HttpMetrics http_metrics;  // counts nothing until attached to the finished router
  auto options = server_options(cfg);
  options.observer = [&http_metrics](const http::Route* route, int status, double seconds) {
    http_metrics.record(route, status, seconds);
  };
  http::Server server(options, router, lifecycle);
  try {
    server.bind();
  } catch (const std::exception& e) {
    common::log::error("cannot start HTTP server", {{"error", e.what()}});
    std::fprintf(stderr, "labelbroker: %s\n", e.what());
    return kExitFailure;
  }
  config::ListenAddress bound = cfg.listen;
  bound.port = server.port();
  // Vendors need the broker's own URL for callbacks, known only once the port is bound.
  std::string public_url = cfg.public_url;
  if (public_url.empty()) {
    config::ListenAddress reachable = bound;
    if (bound.host == "0.0.0.0" || bound.host == "::") {
      // A wildcard address is not a place anyone can call back to.
      reachable.host = bound.host == "::" ? "::1" : "127.0.0.1";
      if (!cfg.vendors.empty())
        common::log::warn(
            "public_url is not set and the broker listens on all interfaces; vendor callbacks "
            "will be addressed to loopback. Set public_url to the broker's external URL.",
            {{"assumed_public_url", "http://" + reachable.to_string()}});
    }
    public_url = "http://" + reachable.to_string();
  }

  vendors::HttpRuntime vendor_runtime;
  vendors::VendorRegistry registry;
  vendors::register_builtin_vendors(registry);
  vendors::VendorSet vendor_set;
  try {
    vendor_set = vendors::VendorSet(registry, cfg.vendors, adapter_context(vendor_runtime, cfg, public_url));
  } catch (const config::ConfigError& e) {
    std::fprintf(stderr, "labelbroker: config error: %s\n", e.what());
    return kExitUsage;
  }
  jobs::Dispatch dispatch(pool, vendor_set, cfg.vendors, cfg.quality, cfg.routing);
  api::shared_key_cache().set_ttl(cfg.auth.key_cache);
  auth::shared_rate_limiter().set_lease(cfg.auth.rate_limit_lease);
  if (cfg.auth.default_requests_per_second > 0)
    auth::shared_rate_limiter().set_default_policy(
        auth::RateLimitPolicy{cfg.auth.default_requests_per_second, cfg.auth.default_burst});
  const datasets::FileCache dataset_files(cfg.datasets.cache_dir ? *cfg.datasets.cache_dir
                                                                : default_dataset_cache_dir());
  api::MetricsService metrics(pool, dispatch, &http_metrics, cfg.metrics, cfg.quality);
  api::register_api(router, {pool, lifecycle, db::expected_schema_version(), vendor_set, dispatch, cfg.jobs,
                             cfg.quality, &dataset_files, cfg.metrics.listen ? nullptr : &metrics});
  http_metrics.attach(router);
  // metrics.listen: /metrics only on a listener of its own (a port kept off the public network).
  http::Router metrics_router;
  std::unique_ptr<http::Server> metrics_server;
  if (cfg.metrics.listen) {
    api::register_metrics_route(metrics_router, pool, metrics);
    http::ServerOptions metrics_options = server_options(cfg);
    metrics_options.host = cfg.metrics.listen->host;
    metrics_options.port = cfg.metrics.listen->port;
    metrics_options.io_threads = 1;
    metrics_options.worker_threads = 1;
    metrics_options.drain_delay = std::chrono::milliseconds(0);
    metrics_server = std::make_unique<http::Server>(metrics_options, metrics_router, lifecycle);
    try {
      metrics_server->bind();
    } catch (const std::exception& e) {
      common::log::error("cannot start the metrics listener", {{"error", e.what()}});
      std::fprintf(stderr, "labelbroker: metrics.listen: %s\n", e.what());
      return kExitFailure;
    }
  }
  jobs::WebhookDelivery webhooks(pool, cfg.webhooks, vendor_runtime);
  jobs::Engine engine(dispatch, cfg.dispatch, &webhooks, &dataset_files);
  metrics.start();
  server.start();
  server.handle_signals();
  if (metrics_server) {
    metrics_server->start();
    config::ListenAddress metrics_bound = *cfg.metrics.listen;
    metrics_bound.port = metrics_server->port();
    common::log::info("serving /metrics", {{"url", "http://" + metrics_bound.to_string() + "/metrics"}});
  }
  if (cfg.dispatch.enabled) engine.start();
  common::log::info("listening", {{"url", "http://" + bound.to_string()}, {"vendors", cfg.vendors.size()}});
  const bool drained = server.wait();
  if (metrics_server) {
    metrics_server->begin_shutdown();
    metrics_server->wait();
  }
  metrics.stop();
  engine.stop();
  common::log::info("stopped", {{"drained", drained}});
  return kExitOk;
}

}  // namespace labelbroker::app
