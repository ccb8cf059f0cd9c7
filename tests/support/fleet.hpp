#pragma once
// The end-to-end test fleet: a scratch database with a team and a submitter key, a vendor-sim
// process with four vendors of known accuracy, and labelbroker processes on demand, plus helpers to
// submit jobs and read what happened. Used by the e2e tests of dispatch, quality and the ledger.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "auth/api_key.hpp"
#include "common/time.hpp"
#include "db/migrations.hpp"
#include "db/team_store.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/scratch_db.hpp"

namespace labelbroker::testing {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;


inline const std::string kBroker = LABELBROKER_BINARY;
inline const std::string kVendorSim = std::string(LABELBROKER_BINARY).substr(0, std::string(LABELBROKER_BINARY).rfind('/')) + "/vendor-sim";
inline const std::vector<std::string> kLabels = {"urgent", "routine", "not_medical"};

// `job` with `gold_items` gold items whose answers cycle through kLabels (vendor-sim reads the
// truth from "_truth").
inline json with_gold(json job, int gold_items) {
  json gold = json::array();
  for (int i = 0; i < gold_items; ++i) {
    const auto& label = kLabels[i % kLabels.size()];
    gold.push_back({{"id", "gold-" + std::to_string(i)},
                    {"data", {{"text", "known note " + std::to_string(i)}, {"_truth", label}}},
                    {"answer", label}});
  }
  job["gold"] = gold;
  return job;
}

// The simulated fleet: quick work, known accuracies, no faults. Mercor's experts have room for
// thousands of one-minute items a week.
inline json fleet_scenario() {
  return json::parse(R"({
    "seed": 4242,
    "worker_threads": 8,
    "access_log": false,
    "callbacks": {"threads": 4, "max_attempts": 3, "backoff_ms": 100, "timeout_ms": 2000},
    "vendors": [
      {"id": "scale", "kind": "scale", "api_key": "sim-scale-key", "callback_secret": "sim-scale-callback-secret",
       "prices_micros": {"categorization": 40000, "comparison": 60000, "textcollection": 80000},
       "capacity": {"max_in_flight": 20000}, "accuracy": {"*": 0.9},
       "latency": {"fixed_ms": 30}, "queue_delay": {"fixed_ms": 20}},
      {"id": "scale-small", "kind": "scale", "api_key": "sim-scale-small-key",
       "callback_secret": "sim-scale-small-callback-secret",
       "prices_micros": {"categorization": 50000, "comparison": 70000, "textcollection": 90000},
       "capacity": {"max_in_flight": 20000}, "accuracy": {"*": 0.8},
       "latency": {"fixed_ms": 40}, "queue_delay": {"fixed_ms": 20}},
      {"id": "surge", "kind": "surge", "api_key": "sim-surge-key", "callback_secret": "sim-surge-callback-secret",
       "payment_per_response_micros": 150000, "capacity": {"max_in_flight": 20000}, "accuracy": {"*": 0.95},
       "latency": {"fixed_ms": 50}, "queue_delay": {"fixed_ms": 20}},
      {"id": "mercor", "kind": "mercor", "api_key": "sim-mercor-key", "callback_secret": "sim-mercor-callback-secret",
       "capacity": {"max_in_flight": 20000}, "accuracy": {"*": 0.85},
       "latency": {"fixed_ms": 50}, "queue_delay": {"fixed_ms": 20}, "minutes_per_item": {"fixed_minutes": 1},
       "experts": [
         {"id": "exp-1", "domain_scores": {"general": 0.9}, "hourly_rate_usd": 90, "available_hours": 168},
         {"id": "exp-2", "domain_scores": {"general": 0.8}, "hourly_rate_usd": 80, "available_hours": 168}
       ]}
    ]})");
}

// The broker's view of the same fleet. Small batches and one sender per vendor make dispatch of a
// few thousand units take long enough to kill a broker in the middle of it.
inline json broker_config(std::uint16_t sim_port, const std::string& db_url, std::uint16_t port, int batch,
                   int lease_ms, const std::string& public_url) {
  const std::string sim = "http://127.0.0.1:" + std::to_string(sim_port);
  auto caps = [&](json task_types, json expertise) {
    return json{{"task_types", task_types}, {"domains", json::array()}, {"expertise", expertise},
                {"max_batch_size", batch}};
  };
  json all_types = {"classification", "preference", "rating"};
  return {
      {"listen", "127.0.0.1:" + std::to_string(port)},
      {"public_url", public_url},
      {"database", {{"url", db_url}, {"pool_size", 12}}},
      {"http", {{"io_threads", 1}, {"worker_threads", 8}}},
      {"log", {{"level", "info"}, {"access_log", false}}},
      {"dispatch",
       {{"workers_per_vendor", 1},
        {"lease_ms", lease_ms},
        {"poll_after_ms", 1500},
        {"poll_interval_ms", 500},
        {"idle_wait_ms", 50},
        {"maintenance_interval_ms", 100},
        {"backoff_initial_ms", 50},
        {"backoff_max_ms", 1000}}},
      {"webhooks", {{"backoff_initial_ms", 50}, {"backoff_max_ms", 500}}},
      {"vendors",
       json::array({
           {{"id", "scale"}, {"kind", "scale"}, {"base_url", sim + "/scale/v1"}, {"api_key", "sim-scale-key"},
            {"callback_secret", "sim-scale-callback-secret"}, {"capabilities", caps(all_types, {"general"})},
            {"prices", {{"classification", "0.04"}, {"preference", "0.06"}, {"rating", "0.08"}}}},
           {{"id", "scale-small"}, {"kind", "scale"}, {"base_url", sim + "/scale-small/v1"},
            {"api_key", "sim-scale-small-key"}, {"callback_secret", "sim-scale-small-callback-secret"},
            {"capabilities", caps(all_types, {"general"})},
            {"prices", {{"classification", "0.05"}, {"preference", "0.07"}, {"rating", "0.09"}}}},
           {{"id", "surge"}, {"kind", "surge"}, {"base_url", sim + "/surge/api"}, {"api_key", "sim-surge-key"},
            {"callback_secret", "sim-surge-callback-secret"},
            {"capabilities", caps({"classification", "rating"}, {"general", "skilled"})},
            {"payment_per_response", "0.15"}},
           {{"id", "mercor"}, {"kind", "mercor"}, {"base_url", sim + "/mercor/v1"}, {"api_key", "sim-mercor-key"},
            {"callback_secret", "sim-mercor-callback-secret"}, {"capabilities", caps(all_types, {"skilled", "expert"})},
            {"hourly_rate_max", "200.00"}, {"weekly_cap_hours", 168}, {"headcount", 2},
            {"expected_minutes_per_item", 1}},
       })}};
}

// vendor-sim, a scratch database with a team and key, and brokers on demand.
class Fleet {
 public:
  // `configure` adjusts every broker's configuration (e.g. budgets, gold rate, vendor caps).
  explicit Fleet(int batch = 50, int lease_ms = 2000, std::function<void(json&)> configure = {},
                 json scenario = fleet_scenario())
      : batch_(batch), lease_ms_(lease_ms), configure_(std::move(configure)) {
    {
      pqxx::connection c(db_.url());
      db::apply_migrations(c, db::builtin_migrations());
      auto [team, created] = db::ensure_team(c, "team-a");
      auto key = auth::generate_api_key();
      db::insert_api_key(c, team.id, key.prefix, key.secret_hash, "submitter");
      key_ = key.plaintext;
      pqxx::nontransaction tx(c);
      webhook_secret_ = tx.exec_params1("SELECT webhook_secret FROM teams WHERE id = $1", team.id)[0].as<std::string>();
    }
    sim_port_ = free_port();
    sim_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        kVendorSim, "--scenario", write_temp_file(scenario.dump()), "--listen",
        "127.0.0.1:" + std::to_string(sim_port_)});
    REQUIRE(sim_->wait_for_stderr("\"msg\":\"listening\"", seconds(30)));
  }

  // Starts a broker process on a fixed port (restarts reuse it, so vendors' callbacks reach it).
  // Brokers sharing a database share one public URL (in production: their load balancer's), so
  // vendors see one broker; public_port stands in for it.
  std::unique_ptr<ChildProcess> start_broker(std::uint16_t port, std::uint16_t public_port = 0) {
    const auto public_url = "http://127.0.0.1:" + std::to_string(public_port ? public_port : port);
    auto config = broker_config(sim_port_, db_.url(), port, batch_, lease_ms_, public_url);
    if (configure_) configure_(config);
    const auto path = write_temp_file(config.dump());
    auto broker = std::make_unique<ChildProcess>(std::vector<std::string>{kBroker, "serve", "--config", path},
                                                 std::map<std::string, std::string>{{"LABELBROKER_CONFIG", ""},
                                                                                    {"LABELBROKER_DATABASE_URL", ""},
                                                                                    {"LABELBROKER_LISTEN", ""}});
    INFO(broker->errors());
    REQUIRE(broker->wait_for_stderr("\"msg\":\"listening\"", seconds(60)));
    return broker;
  }

  std::string submit(std::uint16_t port, const json& job) {
    auto r = http_request(port, "POST", "/v1/jobs", job.dump(), auth());
    INFO(r.body);
    REQUIRE(r.status == 201);
    return json::parse(r.body)["id"].get<std::string>();
  }

  json get(std::uint16_t port, const std::string& path) {
    auto r = http_request(port, "GET", path, "", auth());
    INFO(path << " -> " << r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }

  // Waits (bounded: a hang guard, not a speed check) until the job reaches a final status.
  std::string wait_until_finished(std::uint16_t port, const std::string& job_id, seconds limit = seconds(180)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::string status;
    while (std::chrono::steady_clock::now() < deadline) {
      status = get(port, "/v1/jobs/" + job_id)["status"].get<std::string>();
      if (status != "queued" && status != "running" && status != "draft") return status;
      std::this_thread::sleep_for(milliseconds(200));
    }
    return status;
  }

  std::vector<std::pair<std::string, std::string>> auth() const { return {{"Authorization", "Bearer " + key_}}; }
  json sim_stats() {
    auto r = http_request(sim_port_, "GET", "/_sim/stats");
    REQUIRE(r.status == 200);
    return json::parse(r.body)["vendors"];
  }
  void patch(const std::string& vendor, const json& behaviour) {
    auto r = http_request(sim_port_, "POST", "/_sim/vendors/" + vendor, behaviour.dump(),
                          {{"Content-Type", "application/json"}});
    INFO(r.body);
    REQUIRE(r.status == 200);
  }
  std::uint16_t sim_port() const { return sim_port_; }
  std::string db_url() const { return db_.url(); }
  const std::string& webhook_secret() const { return webhook_secret_; }
  // A submitter key of another team.
  std::string other_team_key() {
    pqxx::connection c(db_.url());
    auto [team, created] = db::ensure_team(c, "team-b");
    auto key = auth::generate_api_key();
    db::insert_api_key(c, team.id, key.prefix, key.secret_hash, "submitter");
    return key.plaintext;
  }

 private:
  ScratchDatabase db_;
  int batch_;
  int lease_ms_;
  std::function<void(json&)> configure_;
  std::string key_;
  std::string webhook_secret_;
  std::uint16_t sim_port_ = 0;
  std::unique_ptr<ChildProcess> sim_;
};

// Items whose true label vendor-sim reads from data._truth, spread over the labels.
inline json make_job(int items, int redundancy, const std::string& expertise, const std::string& callback_url = "") {
  json list = json::array();
  for (int i = 0; i < items; ++i)
    list.push_back({{"id", "item-" + std::to_string(10000 + i)},
                    {"data", {{"text", "note " + std::to_string(i)}, {"_truth", kLabels[i % kLabels.size()]}}}});
  json job = {{"name", "e2e"},
              {"task_type", "classification"},
              {"domain", "general"},
              {"expertise", expertise},
              {"instructions", "Label how urgent each note is."},
              {"labels", kLabels},
              {"items", list},
              {"redundancy", redundancy},
              {"budget_usd", "10000.00"},
              {"deadline", common::format_rfc3339(std::chrono::system_clock::now() + std::chrono::hours(24))}};
  if (!callback_url.empty()) job["callback_url"] = callback_url;
  return job;
}

// Every result of a job, following cursors.
inline std::vector<json> all_results(Fleet& fleet, std::uint16_t port, const std::string& job_id) {
  std::vector<json> out;
  std::string cursor;
  for (int page = 0; page < 1000; ++page) {
    auto body = fleet.get(port, "/v1/jobs/" + job_id + "/results?limit=500" + (cursor.empty() ? "" : "&cursor=" + cursor));
    for (auto& r : body["results"]) out.push_back(r);
    if (body["next_cursor"].is_null()) break;
    cursor = body["next_cursor"].get<std::string>();
  }
  return out;
}

// Per assignment facts straight from the database.
struct Judgments {
  std::map<std::string, std::vector<std::string>> vendors_by_item;  // completed judgments
  long assignments_sent = 0;                                        // rows that reached a vendor
  std::map<std::string, long> sent_per_vendor;
};
inline Judgments judgments(const std::string& db_url, const std::string& job_id) {
  Judgments j;
  pqxx::connection c(db_url);
  pqxx::nontransaction tx(c);
  for (const auto& r : tx.exec_params("SELECT item_id, vendor_id FROM assignments WHERE job_id = $1 AND state = 'completed'",
                                      job_id))
    j.vendors_by_item[r[0].as<std::string>()].push_back(r[1].as<std::string>());
  for (const auto& r : tx.exec_params(
           "SELECT vendor_id, count(*) FROM assignments WHERE job_id = $1 AND vendor_task_id IS NOT NULL GROUP BY 1",
           job_id)) {
    j.sent_per_vendor[r[0].as<std::string>()] = r[1].as<long>();
    j.assignments_sent += r[1].as<long>();
  }
  return j;
}

// A summary of the job's assignments by vendor, state and error, for failure messages.
inline std::string describe_assignments(const std::string& db_url, const std::string& job_id) {
  pqxx::connection c(db_url);
  pqxx::nontransaction tx(c);
  std::string out;
  for (const auto& r : tx.exec_params(
           "SELECT vendor_id, state, coalesce(error_class, '-'), coalesce(left(last_error, 200), '-'), count(*), "
           "max(attempts) FROM assignments WHERE job_id = $1 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2",
           job_id))
    out += r[0].as<std::string>() + " " + r[1].as<std::string>() + " x" + r[4].as<std::string>() + " (attempts<=" +
           r[5].as<std::string>() + ") " + r[2].as<std::string>() + ": " + r[3].as<std::string>() + "\n";
  return out;
}

inline double accuracy_of(const std::string& vendor) {
  static const std::map<std::string, double> kAccuracy = {
      {"scale", 0.9}, {"scale-small", 0.8}, {"surge", 0.95}, {"mercor", 0.85}};
  return kAccuracy.at(vendor);
}

// The chance that a majority vote of these vendors' judgments finds the truth, with vendor-sim's
// model (right with the vendor's accuracy, else a uniformly drawn other label) and the broker's
// tie-break (the label listed first wins). Exact for one or two judgments.
inline double expected_correct(const std::vector<std::string>& vendors, std::size_t truth_rank) {
  const double others = static_cast<double>(kLabels.size() - 1);
  const double truth_wins_tie = static_cast<double>(kLabels.size() - 1 - truth_rank) / others;
  if (vendors.size() == 1) return accuracy_of(vendors[0]);
  const double a = accuracy_of(vendors[0]), b = accuracy_of(vendors[1]);
  return a * b + a * (1 - b) * truth_wins_tie + (1 - a) * b * truth_wins_tie;
}


}  // namespace labelbroker::testing
