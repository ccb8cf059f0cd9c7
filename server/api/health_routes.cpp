#include "api/health_routes.hpp"

#include "api/auth.hpp"

#include <nlohmann/json.hpp>

#include "common/build_info.hpp"
#include "db/probe.hpp"
#include "http/problem.hpp"

namespace labelbroker::api {
namespace {

// Readiness must answer quickly even when the pool is saturated by real work.
constexpr std::chrono::milliseconds kProbeAcquireTimeout{1000};

http::Response not_ready(const std::string& reason) {
  http::Response r = http::problem(503, "not-ready", "Not ready", reason);
  r.headers.set("Cache-Control", "no-store");
  r.headers.set("Retry-After", "1");
  return r;
}

}  // namespace

void register_health_routes(http::Router& router, HealthDependencies deps) {
  // Liveness: the process answers. No database, so it runs on the I/O thread.
  router.add(
      "GET", "/healthz",
      [](http::Request&) {
        http::Response r = http::Response::json(200, R"({"status":"ok"})");
        r.headers.set("Cache-Control", "no-store");
        return r;
      },
      http::Execution::io_thread);

  router.add("GET", "/readyz", [deps](http::Request&) {
    if (deps.lifecycle.draining) return not_ready("shutting down");
    db::SchemaStatus status = db::probe_schema(deps.pool, kProbeAcquireTimeout);
    if (!status.reachable) return not_ready(status.error);
    if (status.applied_version < deps.expected_schema_version) {
      return not_ready("database schema is at version " + std::to_string(std::max(0, status.applied_version)) +
                       ", this build needs " + std::to_string(deps.expected_schema_version) +
                       "; run `labelbroker migrate`");
    }
    nlohmann::json body = {{"status", "ready"}, {"schema_version", status.applied_version}};
    http::Response r = http::Response::json(200, body.dump());
    r.headers.set("Cache-Control", "no-store");
    return r;
  });

  router.add("GET", "/v1/version", require_role(deps.pool, auth::Role::viewer, [deps](http::Request&, const Caller&) {
    db::SchemaStatus status = db::probe_schema(deps.pool, kProbeAcquireTimeout);
    nlohmann::json body = {
        {"version", std::string(common::build_version())},
        {"git_commit", std::string(common::build_commit())},
        {"schema_version", status.reachable && status.applied_version >= 0 ? nlohmann::json(status.applied_version)
                                                                           : nlohmann::json(nullptr)},
        {"expected_schema_version", deps.expected_schema_version},
    };
    return http::Response::json(200, body.dump());
  }));
}

}  // namespace labelbroker::api
