// The job lifecycle end to end: real labelbroker processes, a real vendor-sim process, a real
// PostgreSQL, real HTTP between all of them. A team submits a job; vendors label it; the team gets
// results and a signed webhook. Then the same with brokers killed mid-dispatch.
#include <csignal>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "auth/api_key.hpp"
#include "common/crypto.hpp"
#include "common/time.hpp"
#include "db/migrations.hpp"
#include "db/team_store.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "support/fleet.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/scratch_db.hpp"
#include "support/webhook_receiver.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("jobs e2e: a 200-item job with redundancy 2 completes, labels match the simulated accuracy, the webhook is signed",
          "[.db][e2e-dispatch]") {
  Fleet fleet;
  WebhookReceiver sink;
  const auto port = free_port();
  auto broker = fleet.start_broker(port);

  const std::string job_id = fleet.submit(port, make_job(200, 2, "general", sink.url("team-a")));
  const std::string status = fleet.wait_until_finished(port, job_id);
  INFO(broker->errors().substr(broker->errors().size() > 4000 ? broker->errors().size() - 4000 : 0));
  REQUIRE(status == "completed");

  auto job = fleet.get(port, "/v1/jobs/" + job_id);
  CHECK(job["counts"]["labeled"] == 200);

  // Every item: two judgments from two different vendors.
  auto facts = judgments(fleet.db_url(), job_id);
  REQUIRE(facts.vendors_by_item.size() == 200);
  std::map<std::string, int> per_vendor;
  for (const auto& [item, vendors] : facts.vendors_by_item) {
    REQUIRE(vendors.size() == 2);
    CHECK(vendors[0] != vendors[1]);
    for (const auto& v : vendors) ++per_vendor[v];
  }
  // The routing policy spreads the 400 judgments over the three eligible vendors (mercor does not
  // take "general" expertise) within the default shares: at least 5% and at most 50% each.
  CHECK(per_vendor.count("mercor") == 0);
  for (const auto& v : {"scale", "scale-small", "surge"}) {
    CHECK(per_vendor[v] >= 0.05 * 400 - 2);
    CHECK(per_vendor[v] <= 0.5 * 400 + 2);
  }

  // Results against vendor-sim's truth: as often right as the vendors' accuracies predict.
  auto results = all_results(fleet, port, job_id);
  REQUIRE(results.size() == 200);
  double expected = 0, variance = 0;
  int correct = 0;
  for (const auto& r : results) {
    const int index = std::stoi(r["item_id"].get<std::string>().substr(5)) - 10000;
    const std::size_t truth_rank = static_cast<std::size_t>(index) % kLabels.size();
    std::vector<std::string> vendors;
    for (const auto& j : r["judgments"]) vendors.push_back(j["vendor"].get<std::string>());
    REQUIRE(vendors.size() == 2);
    std::sort(vendors.begin(), vendors.end());
    const double p = expected_correct(vendors, truth_rank);
    expected += p;
    variance += p * (1 - p);
    if (r["label"] == kLabels[truth_rank]) ++correct;
    // Two judgments each: the job's end relabels them with Dawid-Skene.
    CHECK(r["method"] == "dawid_skene");
    CHECK(r["confidence"].get<double>() > 0.0);
    CHECK(r["confidence"].get<double>() <= 1.0);
  }
  // `expected` is what majority vote would get; Dawid-Skene, which weighs the vendors by their
  // estimated accuracy, does at least as well up to chance.
  INFO("correct " << correct << ", majority vote expects " << expected << " +- " << std::sqrt(variance));
  CHECK(correct >= expected - 4 * std::sqrt(variance) - 1);

  // No duplicate task at any vendor: each vendor created exactly the units sent to it.
  auto stats = fleet.sim_stats();
  for (const auto& [vendor, sent] : facts.sent_per_vendor) CHECK(stats[vendor]["tasks_created"] == sent);

  // The webhook: delivered, signed with the team's secret, describing the completed job.
  auto hooks = sink.wait_for(1);
  REQUIRE(hooks.size() >= 1);
  CHECK(hooks[0].headers["x-labelbroker-signature"] ==
        "sha256=" + common::hmac_sha256_hex(fleet.webhook_secret(), hooks[0].body));
  auto event = json::parse(hooks[0].body);
  CHECK(event["type"] == "job.completed");
  CHECK(event["data"]["job"]["id"] == job_id);
  CHECK(event["data"]["job"]["counts"]["labeled"] == 200);
}

namespace {

// Waits until some of the job's units reached vendors and some have not: mid-dispatch.
void wait_mid_dispatch(const std::string& db_url, const std::string& job_id) {
  pqxx::connection c(db_url);
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params1(
        "SELECT count(*) FILTER (WHERE vendor_task_id IS NOT NULL), count(*) FILTER (WHERE state = 'queued') "
        "FROM assignments WHERE job_id = $1",
        job_id);
    if (r[0].as<long>() >= 200 && r[1].as<long>() > 0) return;
    std::this_thread::sleep_for(milliseconds(10));
  }
  FAIL("the job never got half-way through dispatch");
}

// After a crash and recovery: every item labeled from exactly `redundancy` judgments by distinct
// vendors, and every vendor holds exactly one task per unit the broker sent it.
void check_nothing_lost_or_duplicated(Fleet& fleet, const std::string& job_id, int items, int redundancy) {
  INFO(describe_assignments(fleet.db_url(), job_id));
  auto facts = judgments(fleet.db_url(), job_id);
  CHECK(facts.vendors_by_item.size() == static_cast<std::size_t>(items));
  int wrong_count = 0;
  for (const auto& [item, vendors] : facts.vendors_by_item) {
    std::set<std::string> distinct(vendors.begin(), vendors.end());
    if (vendors.size() != static_cast<std::size_t>(redundancy) || distinct.size() != vendors.size()) ++wrong_count;
  }
  CHECK(wrong_count == 0);
  auto stats = fleet.sim_stats();
  long created = 0;
  for (const auto& [vendor, sent] : facts.sent_per_vendor) {
    INFO(vendor);
    CHECK(stats[vendor]["tasks_created"].get<long>() == sent);
    created += stats[vendor]["tasks_created"].get<long>();
  }
  CHECK(created == static_cast<long>(items) * redundancy);
  pqxx::connection c(fleet.db_url());
  pqxx::nontransaction tx(c);
  CHECK(tx.exec_params1("SELECT count(*) FROM job_items WHERE job_id = $1 AND state = 'labeled'", job_id)[0].as<long>() ==
        items);
}

}  // namespace

TEST_CASE("jobs e2e: kill -9 during dispatch of 2,000 items, restart: nothing lost, nothing duplicated",
          "[.db][e2e-dispatch][kill]") {
  Fleet fleet(/*batch=*/25, /*lease_ms=*/1500);
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  // skilled expertise: surge (no idempotency key at all) and mercor (batch-keyed idempotency), the
  // two vendors where a careless resend would create duplicates.
  const std::string job_id = fleet.submit(port, make_job(2000, 2, "skilled"));
  wait_mid_dispatch(fleet.db_url(), job_id);
  broker->signal(SIGKILL);
  broker->wait(seconds(10));

  auto restarted = fleet.start_broker(port);
  const std::string status = fleet.wait_until_finished(port, job_id);
  INFO(describe_assignments(fleet.db_url(), job_id));
  INFO(restarted->errors().substr(restarted->errors().size() > 4000 ? restarted->errors().size() - 4000 : 0));
  REQUIRE(status == "completed");
  check_nothing_lost_or_duplicated(fleet, job_id, 2000, 2);
}

TEST_CASE("jobs e2e: two brokers share the database, one is killed mid-dispatch, the other finishes the job",
          "[.db][e2e-dispatch][kill]") {
  Fleet fleet(/*batch=*/25, /*lease_ms=*/1500);
  const auto port_a = free_port();
  const auto port_b = free_port();
  // Vendors call back to b's address for both (as to a load balancer that still reaches b).
  auto a = fleet.start_broker(port_a, port_b);
  auto b = fleet.start_broker(port_b);
  const std::string job_id = fleet.submit(port_a, make_job(2000, 2, "skilled"));
  wait_mid_dispatch(fleet.db_url(), job_id);
  a->signal(SIGKILL);
  a->wait(seconds(10));

  const std::string status = fleet.wait_until_finished(port_b, job_id);
  INFO(describe_assignments(fleet.db_url(), job_id));
  INFO(b->errors().substr(b->errors().size() > 4000 ? b->errors().size() - 4000 : 0));
  REQUIRE(status == "completed");
  check_nothing_lost_or_duplicated(fleet, job_id, 2000, 2);
}

namespace {

long count_where(const std::string& db_url, const std::string& job_id, const std::string& condition) {
  pqxx::connection c(db_url);
  pqxx::nontransaction tx(c);
  return tx.exec_params1("SELECT count(*) FROM assignments WHERE job_id = $1 AND " + condition, job_id)[0].as<long>();
}

// Polls (bounded) until the condition holds for `expected` of the job's assignments.
bool eventually_count(const std::string& db_url, const std::string& job_id, const std::string& condition, long expected,
                      seconds limit = seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (count_where(db_url, job_id, condition) == expected) return true;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return false;
}

}  // namespace

TEST_CASE("jobs e2e: vendor callbacks are authenticated, and a repeated or altered callback changes nothing",
          "[.db][e2e-dispatch][callbacks]") {
  Fleet fleet;
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  // Scale only, so the test can replay a Scale callback.
  auto job = make_job(6, 1, "general");
  job["vendors"] = {{"allow", {"scale"}}};
  const std::string job_id = fleet.submit(port, job);
  REQUIRE(fleet.wait_until_finished(port, job_id) == "completed");

  pqxx::connection c(fleet.db_url());
  pqxx::nontransaction tx(c);
  auto row = tx.exec_params1(
      "SELECT vendor_task_id, answer, id::text FROM assignments WHERE job_id = $1 AND state = 'completed' LIMIT 1",
      job_id);
  const std::string task_id = row[0].as<std::string>();
  const std::string answer = row[1].as<std::string>();

  // The task as vendor-sim holds it, sent back as Scale's callback with a different answer.
  auto task = http_request(fleet.sim_port(), "GET", "/scale/v1/task/" + task_id, "",
                           {{"Authorization", "Basic " + common::base64_encode("sim-scale-key:")}});
  REQUIRE(task.status == 200);
  const std::string other = answer == kLabels[0] ? kLabels[1] : kLabels[0];
  const json callback = {{"task", json::parse(task.body)}, {"response", {{"category", other}}}, {"task_id", task_id}};

  auto forged = http_request(port, "POST", "/v1/callbacks/scale", callback.dump(),
                             {{"Content-Type", "application/json"}, {"scale-callback-auth", "not-the-secret"}});
  CHECK(forged.status == 401);
  CHECK(json::parse(forged.body)["status"] == 401);
  auto unsigned_ = http_request(port, "POST", "/v1/callbacks/scale", callback.dump(), {{"Content-Type", "application/json"}});
  CHECK(unsigned_.status == 401);
  CHECK(http_request(port, "POST", "/v1/callbacks/no-such-vendor", "{}").status == 404);
  auto garbage = http_request(port, "POST", "/v1/callbacks/scale", "{not json",
                              {{"scale-callback-auth", "sim-scale-callback-secret"}});
  CHECK(garbage.status == 400);

  for (int i = 0; i < 2; ++i) {
    auto replay = http_request(port, "POST", "/v1/callbacks/scale", callback.dump(),
                               {{"Content-Type", "application/json"}, {"scale-callback-auth", "sim-scale-callback-secret"}});
    REQUIRE(replay.status == 200);
    CHECK(json::parse(replay.body)["recorded"] == 0);
  }
  auto after = tx.exec_params1("SELECT answer FROM assignments WHERE vendor_task_id = $1", task_id);
  CHECK(after[0].as<std::string>() == answer);
  CHECK(count_where(fleet.db_url(), job_id, "state = 'completed'") == 6);
}

TEST_CASE("jobs e2e: lost callbacks only delay results: the poller asks the vendors", "[.db][e2e-dispatch][poll]") {
  Fleet fleet;
  for (const auto* v : {"scale", "scale-small", "surge"}) fleet.patch(v, {{"dropped_callback_rate", 1.0}});
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  const std::string job_id = fleet.submit(port, make_job(30, 2, "general"));
  REQUIRE(fleet.wait_until_finished(port, job_id) == "completed");
  CHECK(count_where(fleet.db_url(), job_id, "state = 'completed'") == 60);
  auto stats = fleet.sim_stats();
  long dropped = 0, sent = 0;
  for (const auto* v : {"scale", "scale-small", "surge"}) {
    dropped += stats[v]["callbacks_dropped"].get<long>();
    sent += stats[v]["callbacks_sent"].get<long>();
  }
  CHECK(dropped == 60);
  CHECK(sent == 0);
  CHECK(broker->errors().find("results recovered by polling") != std::string::npos);
}

TEST_CASE("jobs e2e: cancel stops unstarted work at the vendors, only the owning team can cancel",
          "[.db][e2e-dispatch][cancel]") {
  Fleet fleet;
  WebhookReceiver sink;
  for (const auto* v : {"scale", "scale-small", "surge"}) fleet.patch(v, {{"paused", true}});
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  const std::string job_id = fleet.submit(port, make_job(20, 2, "general", sink.url("team-a")));
  REQUIRE(eventually_count(fleet.db_url(), job_id, "state = 'submitted'", 40));

  const auto intruder = fleet.other_team_key();
  auto foreign = http_request(port, "POST", "/v1/jobs/" + job_id + "/cancel", "", {{"Authorization", "Bearer " + intruder}});
  CHECK(foreign.status == 404);
  CHECK(http_request(port, "POST", "/v1/jobs/not-a-job/cancel", "", fleet.auth()).status == 404);

  auto canceled = http_request(port, "POST", "/v1/jobs/" + job_id + "/cancel", "", fleet.auth());
  INFO(canceled.body);
  REQUIRE(canceled.status == 200);
  CHECK(json::parse(canceled.body)["status"] == "canceled");
  CHECK(fleet.get(port, "/v1/jobs/" + job_id)["status"] == "canceled");
  CHECK(http_request(port, "POST", "/v1/jobs/" + job_id + "/cancel", "", fleet.auth()).status == 409);

  // Every unit was still queued at its vendor, so every one is canceled there.
  REQUIRE(eventually_count(fleet.db_url(), job_id, "state = 'canceled'", 40));
  auto stats = fleet.sim_stats();
  long created = 0;
  for (const auto* v : {"scale", "scale-small", "surge"}) created += stats[v]["tasks_created"].get<long>();
  CHECK(created == 40);
  CHECK(stats["scale"]["cancels"].get<long>() + stats["scale-small"]["cancels"].get<long>() ==
        count_where(fleet.db_url(), job_id, "state = 'canceled' AND vendor_id LIKE 'scale%'"));

  auto hooks = sink.wait_for(1);
  REQUIRE_FALSE(hooks.empty());
  CHECK(json::parse(hooks[0].body)["type"] == "job.canceled");
}

TEST_CASE("jobs e2e: at the deadline open units are canceled and a job with no label ends failed",
          "[.db][e2e-dispatch][deadline]") {
  Fleet fleet;
  for (const auto* v : {"scale", "scale-small", "surge"}) fleet.patch(v, {{"paused", true}});
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  auto job = make_job(10, 1, "general");
  job["deadline"] = common::format_rfc3339(std::chrono::system_clock::now() + seconds(4));
  const std::string job_id = fleet.submit(port, job);
  REQUIRE(fleet.wait_until_finished(port, job_id, seconds(60)) == "failed");
  auto body = fleet.get(port, "/v1/jobs/" + job_id);
  CHECK(body["end_reason"] == "deadline");
  CHECK(body["counts"]["labeled"] == 0);
  CHECK(eventually_count(fleet.db_url(), job_id, "state = 'canceled'", 10));
}
