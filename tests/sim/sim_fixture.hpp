#pragma once
// Shared helpers for the vendor-sim tests: a simulator on a free port built from an inline
// scenario, authenticated requests per kind, a callback receiver, and a bounded wait.
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/crypto.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "support/http_client.hpp"
#include "support/loopback_server.hpp"
#include "vendors/sim/scenario.hpp"
#include "vendors/sim/simulator.hpp"

namespace labelbroker::vendors::sim::testing {

using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

// Three vendors, one per kind, that work instantly and never fail; tests patch what they need.
inline json base_scenario() {
  return json::parse(R"({
    "seed": 7,
    "worker_threads": 4,
    "callbacks": {"threads": 1, "max_attempts": 3, "backoff_ms": 20, "timeout_ms": 2000},
    "vendors": [
      {"id": "sc", "kind": "scale", "api_key": "scale-key", "callback_secret": "scale-secret",
       "prices_micros": {"categorization": 40000, "comparison": 60000, "textcollection": 80000},
       "accuracy": {"*": 0.9, "medical": 0.7}},
      {"id": "sg", "kind": "surge", "api_key": "surge-key", "callback_secret": "surge-secret",
       "payment_per_response_micros": 150000, "accuracy": {"*": 0.9}},
      {"id": "mc", "kind": "mercor", "api_key": "mercor-key", "callback_secret": "mercor-secret",
       "accuracy": {"*": 0.9, "medical": 0.95}, "minutes_per_item": {"fixed_minutes": 30},
       "experts": [
         {"id": "cheap", "domain_scores": {"medical": 0.6}, "hourly_rate_usd": 60, "available_hours": 40},
         {"id": "md", "domain_scores": {"medical": 0.97}, "hourly_rate_usd": 120, "available_hours": 1},
         {"id": "pricey", "domain_scores": {"medical": 0.99}, "hourly_rate_usd": 500}
       ]}
    ]})");
}

inline Headers basic(const std::string& key) {
  return {{"Authorization", "Basic " + common::base64_encode(key + ":")}, {"Content-Type", "application/json"}};
}
inline Headers bearer(const std::string& key, const std::string& idempotency_key = "") {
  Headers h{{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}};
  if (!idempotency_key.empty()) h.emplace_back("Idempotency-Key", idempotency_key);
  return h;
}

// Polls until `done` is true; false after `timeout` (the caller asserts).
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

// A clock the test sets by hand.
class ManualClock final : public common::Clock {
 public:
  explicit ManualClock(std::string_view rfc3339) { set(rfc3339); }
  void set(std::string_view rfc3339) {
    std::lock_guard lock(mutex_);
    now_ = *common::parse_rfc3339(rfc3339);
  }
  std::chrono::system_clock::time_point now() const override {
    std::lock_guard lock(mutex_);
    return now_;
  }

 private:
  mutable std::mutex mutex_;
  std::chrono::system_clock::time_point now_;
};

class Sim {
 public:
  explicit Sim(const json& scenario = base_scenario(), const common::Clock& clock = system_clock())
      : Sim(parse_scenario(scenario.dump(), "test-scenario"), clock) {}
  Sim(const Scenario& scenario, const common::Clock& clock)
      : server_(scenario, sim_server_options(scenario, "127.0.0.1", 0), clock) {
    server_.start();
  }
  std::uint16_t port() const { return server_.port(); }
  Simulator& simulator() { return server_.simulator(); }

  labelbroker::testing::HttpResult call(const std::string& method, const std::string& target,
                                        const std::string& body = "", const Headers& headers = {}) {
    return labelbroker::testing::http_request(port(), method, target, body, headers);
  }
  json call_json(const std::string& method, const std::string& target, const json& body, const Headers& headers,
                 int expected_status = 200) {
    auto r = call(method, target, body.is_null() ? "" : body.dump(), headers);
    INFO(method << " " << target << " -> " << r.status << " " << r.body);
    REQUIRE(r.status == expected_status);
    return json::parse(r.body);
  }
  json stats(const std::string& vendor) { return json::parse(call("GET", "/_sim/stats").body)["vendors"][vendor]; }
  void patch(const std::string& vendor, const json& patch) {
    auto r = call("POST", "/_sim/vendors/" + vendor, patch.dump(), {{"Content-Type", "application/json"}});
    INFO(r.body);
    REQUIRE(r.status == 200);
  }

 private:
  SimServer server_;
};

// An in-process HTTP server that records callbacks; the first `fail_first` get a 500.
class Receiver {
 public:
  struct Got {
    std::string path;
    std::string target;
    std::string body;
    http::Headers headers;
  };

  explicit Receiver(int fail_first = 0) : fail_first_(fail_first) {
    router_.add("POST", "/hooks/{name}", [this](http::Request& r) {
      std::lock_guard lock(mutex_);
      ++attempts_;
      if (fail_first_ > 0) {
        --fail_first_;
        return http::Response::json(500, R"({"error":"try again"})");
      }
      got_.push_back({r.path, r.target, r.body, r.headers});
      return http::Response::json(200, "{}");
    });
    auto o = labelbroker::testing::loopback_server_options();
    o.shutdown_grace = std::chrono::seconds(2);
    server_ = std::make_unique<http::Server>(o, router_, lifecycle_);
    server_->start();
  }
  std::string url(const std::string& name) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + "/hooks/" + name;
  }
  std::vector<Got> got() {
    std::lock_guard lock(mutex_);
    return got_;
  }
  int attempts() {
    std::lock_guard lock(mutex_);
    return attempts_;
  }
  bool wait_for(std::size_t n) {
    return eventually([&] { return got().size() >= n; });
  }

 private:
  std::mutex mutex_;
  std::vector<Got> got_;
  int fail_first_;
  int attempts_ = 0;
  http::Router router_;
  http::Lifecycle lifecycle_;
  std::unique_ptr<http::Server> server_;  // last: stopped first
};

}  // namespace labelbroker::vendors::sim::testing
