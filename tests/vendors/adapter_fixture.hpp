#pragma once
// Adapters against vendor-sim over real HTTP: a simulator in-process on a free port, a callback
// receiver (the broker's callback route shape) on another, and adapters built from config text the
// way the broker builds them.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "support/loopback_server.hpp"
#include "support/http_client.hpp"
#include "vendors/registry.hpp"
#include "vendors/sim/scenario.hpp"
#include "vendors/sim/simulator.hpp"

namespace labelbroker::testing {

// One vendor per kind; work is instant and faults are off until a test patches them.
inline nlohmann::json adapter_test_scenario() {
  return nlohmann::json::parse(R"({
    "seed": 11,
    "worker_threads": 8,
    "callbacks": {"threads": 1, "max_attempts": 3, "backoff_ms": 20, "timeout_ms": 2000},
    "vendors": [
      {"id": "sc", "kind": "scale", "api_key": "scale-key", "callback_secret": "scale-callback-secret-0123",
       "prices_micros": {"categorization": 40000, "comparison": 60000, "textcollection": 80000},
       "accuracy": {"*": 0.9}},
      {"id": "sg", "kind": "surge", "api_key": "surge-key", "callback_secret": "surge-callback-secret-0123",
       "payment_per_response_micros": 150000, "accuracy": {"*": 0.9}},
      {"id": "mc", "kind": "mercor", "api_key": "mercor-key", "callback_secret": "mercor-callback-secret-0123",
       "accuracy": {"*": 0.95}, "minutes_per_item": {"fixed_minutes": 30},
       "experts": [
         {"id": "cheap", "domain_scores": {"medical": 0.6}, "hourly_rate_usd": 60, "available_hours": 40},
         {"id": "md", "domain_scores": {"medical": 0.97}, "hourly_rate_usd": 120, "available_hours": 40},
         {"id": "pricey", "domain_scores": {"medical": 0.99}, "hourly_rate_usd": 500}
       ]}
    ]})");
}

// Receives callbacks the way the broker's POST /v1/callbacks/{vendor_id} will: hands them to the
// adapter and answers 401 when the adapter rejects them.
class CallbackReceiver {
 public:
  CallbackReceiver() : server_(loopback_server_options(1, 2), router_, lifecycle_) {
    server_.bind();
    router_.add("POST", "/v1/callbacks/{vendor}", [this](http::Request& req) {
      vendors::InboundCallback cb;
      cb.body = req.body;
      cb.query = req.query;
      for (const auto& h : req.headers.all()) cb.headers.push_back(h);
      std::lock_guard lock(mutex_);
      if (!adapter_) return http::Response::json(503, "{}");
      try {
        auto results = adapter_->parse_callback(cb);
        for (auto& r : results) results_.push_back(std::move(r));
        changed_.notify_all();
        return http::Response::json(200, "{}");
      } catch (const vendors::CallbackRejected&) {
        ++rejected_;
        return http::Response::json(401, "{}");
      } catch (const vendors::VendorError&) {
        ++malformed_;
        return http::Response::json(400, "{}");
      }
    });
    server_.start();
  }

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(server_.port()) + "/v1/callbacks"; }
  void attach(vendors::VendorAdapter* adapter) {
    std::lock_guard lock(mutex_);
    adapter_ = adapter;
  }
  // Waits (bounded) until `count` results arrived.
  std::vector<vendors::UnitResult> wait_for(std::size_t count, std::chrono::seconds limit = std::chrono::seconds(20)) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, limit, [&] { return results_.size() >= count; });
    return results_;
  }
  int rejected() {
    std::lock_guard lock(mutex_);
    return rejected_;
  }

 private:
  http::Router router_;
  http::Lifecycle lifecycle_;
  http::Server server_;
  std::mutex mutex_;
  std::condition_variable changed_;
  vendors::VendorAdapter* adapter_ = nullptr;
  std::vector<vendors::UnitResult> results_;
  int rejected_ = 0;
  int malformed_ = 0;
};

class SimFixture {
 public:
  SimFixture()
      : sim_(vendors::sim::parse_scenario(adapter_test_scenario().dump(), "adapter-test-scenario"),
             vendors::sim::sim_server_options(
                 vendors::sim::parse_scenario(adapter_test_scenario().dump(), "adapter-test-scenario"), "127.0.0.1",
                 0)) {
    sim_.start();
  }

  std::uint16_t port() const { return sim_.port(); }
  std::string base(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port()) + path; }

  // Creates the adapter from one vendors[] entry (JSON text).
  std::unique_ptr<vendors::VendorAdapter> adapter(const std::string& entry) {
    const auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    auto cfg = config::parse_config("{\"vendors\": [" + entry + "]}", "test.json", env);
    vendors::VendorRegistry registry;
    vendors::register_builtin_vendors(registry);
    return registry.create(cfg.vendors.at(0), {runtime_, receiver_.base_url(), "test.json", env});
  }

  CallbackReceiver& receiver() { return receiver_; }
  vendors::HttpRuntime& runtime() { return runtime_; }

  nlohmann::json stats(const std::string& vendor) {
    auto r = http_request(port(), "GET", "/_sim/stats");
    REQUIRE(r.status == 200);
    return nlohmann::json::parse(r.body)["vendors"][vendor];
  }
  void patch(const std::string& vendor, const nlohmann::json& behaviour) {
    auto r = http_request(port(), "POST", "/_sim/vendors/" + vendor, behaviour.dump(),
                          {{"Content-Type", "application/json"}});
    INFO(r.body);
    REQUIRE(r.status == 200);
  }

 private:
  CallbackReceiver receiver_;  // before the runtime: adapters it holds use the runtime
  vendors::HttpRuntime runtime_;
  vendors::sim::SimServer sim_;
};

inline vendors::WorkUnit unit(const std::string& assignment_id, const std::string& text,
                              vendors::TaskType type = vendors::TaskType::classification,
                              std::vector<std::string> labels = {"urgent", "routine", "not_medical"}) {
  vendors::WorkUnit u;
  u.assignment_id = assignment_id;
  u.job_id = "job-1";
  u.item_ref = "item-" + assignment_id;
  u.task_type = type;
  u.domain = "medical";
  u.expertise = vendors::Expertise::general;
  u.instructions = "Label how urgent each note is.";
  u.labels = std::move(labels);
  u.data = {{"text", text}};
  return u;
}

// Polls the adapter until every unit is completed (bounded).
inline std::vector<vendors::UnitResult> poll_until_done(vendors::VendorAdapter& adapter,
                                                        const std::vector<vendors::UnitRef>& refs) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::vector<vendors::UnitResult> results;
  while (std::chrono::steady_clock::now() < deadline) {
    results = adapter.poll(refs);
    bool done = results.size() == refs.size();
    for (const auto& r : results) done = done && r.status == vendors::UnitStatus::completed;
    if (done) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return results;
}

}  // namespace labelbroker::testing
