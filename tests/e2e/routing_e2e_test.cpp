// Routing end to end, against vendor-sim: the decision log says why each vendor was left out, an
// outage opens a vendor's breaker and its unstarted work moves without being labeled twice or
// billed twice, and a vendor whose quality drops mid-job loses its share.
#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "db/admin_store.hpp"
#include "db/routing_store.hpp"
#include "support/fleet.hpp"
#include "support/http_client.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using json = nlohmann::json;

namespace {

// Polls `done` until it holds or `limit` passes (a hang guard, not a speed check).
bool eventually(const std::function<bool()>& done, seconds limit, milliseconds step = milliseconds(100)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(step);
  }
  return done();
}

long count_sql(const std::string& db_url, const std::string& sql, const std::string& job_id) {
  pqxx::connection c(db_url);
  pqxx::nontransaction tx(c);
  return tx.exec_params1(sql, job_id)[0].as<long>();
}

// The job's routing log, oldest first, following cursors.
std::vector<json> routing_log(Fleet& fleet, std::uint16_t port, const std::string& job_id) {
  std::vector<json> out;
  std::string cursor;
  for (int page = 0; page < 1000; ++page) {
    auto body = fleet.get(port, "/v1/jobs/" + job_id + "/routing?limit=500" + (cursor.empty() ? "" : "&cursor=" + cursor));
    REQUIRE(body["job_id"] == job_id);
    for (auto& d : body["decisions"]) out.push_back(d);
    if (body["next_cursor"].is_null()) break;
    cursor = body["next_cursor"].get<std::string>();
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<json> of_kind(const std::vector<json>& log, const std::string& kind) {
  std::vector<json> out;
  for (const auto& d : log)
    if (d["kind"] == kind) out.push_back(d);
  return out;
}

// One vendor's line of a plan decision.
json vendor_line(const json& decision, const std::string& vendor) {
  for (const auto& v : decision["decision"]["vendors"])
    if (v["vendor"] == vendor) return v;
  FAIL("no line for " << vendor << " in " << decision.dump());
  return {};
}

std::string breaker_state(Fleet& fleet, std::uint16_t port, const std::string& vendor) {
  const auto body = fleet.get(port, "/v1/vendors");
  for (const auto& v : body["vendors"])
    if (v["id"] == vendor) return v["circuit_breaker"]["state"].get<std::string>();
  FAIL("GET /v1/vendors does not list " << vendor << ": " << body.dump());
  return {};
}

// Real (not gold) work of a job.
const std::string kReal = "JOIN job_items i USING (job_id, item_id) WHERE a.job_id = $1 AND i.gold_answer IS NULL ";

// A vendor's share of a domain's judgments in GET /v1/concentration (-1: domain not there yet).
double concentration_share(Fleet& fleet, std::uint16_t port, const std::string& domain, const std::string& vendor,
                           long* items = nullptr) {
  const auto body = fleet.get(port, "/v1/concentration?window=24h");
  for (const auto& d : body["domains"]) {
    if (d["domain"] != domain) continue;
    if (items) *items = d["items"].get<long>();
    for (const auto& v : d["vendors"])
      if (v["vendor"] == vendor) return v["share"].get<double>();
    return 0;
  }
  return -1;
}

}  // namespace

TEST_CASE("routing e2e: the decision log says why a vendor was left out (share cap, team deny list, open breaker)",
          "[.db][e2e-routing]") {
  // A share cap that applies after 10 judgments; two failed sends open a breaker, which then stays
  // open for the rest of the test.
  Fleet fleet(50, 2000, [](json& config) {
    config["routing"] = {{"share_cap_min_window", 10},
                         {"breaker_consecutive_failures", 2},
                         {"breaker_cooldown_ms", 60000}};
    config["dispatch"]["backoff_initial_ms"] = 20;
    config["dispatch"]["backoff_max_ms"] = 200;
  });
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  std::set<std::string> reasons_seen;

  // (a) A job only scale may take: scale then has every general judgment of the window.
  auto job_a = make_job(60, 1, "general");
  job_a["vendors"] = {{"allow", json::array({"scale"})}};
  const auto a = fleet.submit(port, job_a);
  REQUIRE(fleet.wait_until_finished(port, a) == "completed");
  CHECK(count_sql(fleet.db_url(), "SELECT count(*) FROM assignments WHERE job_id = $1 AND vendor_id = 'scale' "
                                  "AND state = 'completed'", a) == 60);

  // (b) The team denies scale-small; a general job may only go to surge: scale is over its cap
  // and mercor does not take general work.
  {
    pqxx::connection c(fleet.db_url());
    db::TeamChange deny;
    deny.denied_vendors = std::vector<std::string>{"scale-small"};
    db::AuditContext cli;
    cli.actor.type = "cli";
    REQUIRE(db::update_team(c, "team-a", deny, cli));
  }
  const auto b = fleet.submit(port, make_job(20, 1, "general"));
  REQUIRE(fleet.wait_until_finished(port, b) == "completed");
  {
    const auto plans = of_kind(routing_log(fleet, port, b), "plan");
    REQUIRE(!plans.empty());
    for (const auto& plan : plans) {
      INFO(plan.dump(2));
      const auto scale = vendor_line(plan, "scale");
      CHECK(scale["eligible"] == false);
      CHECK(scale["removed_by"] == "over_share_cap");
      CHECK(scale["detail"].get<std::string>().find("window share 1.000") != std::string::npos);
      const auto small = vendor_line(plan, "scale-small");
      CHECK(small["eligible"] == false);
      CHECK(small["removed_by"] == "team_deny_list");
      CHECK(vendor_line(plan, "mercor")["removed_by"] == "capability");
      const auto surge = vendor_line(plan, "surge");
      CHECK(surge["eligible"] == true);
      CHECK(!surge.contains("removed_by"));
      reasons_seen.insert(scale["removed_by"].get<std::string>());
      reasons_seen.insert(small["removed_by"].get<std::string>());
    }
    INFO(describe_assignments(fleet.db_url(), b));
    CHECK(count_sql(fleet.db_url(), "SELECT count(*) FROM assignments WHERE job_id = $1 AND vendor_id <> 'surge'", b) ==
          0);
    CHECK(count_sql(fleet.db_url(),
                    "SELECT count(DISTINCT item_id) FROM assignments WHERE job_id = $1 AND vendor_id = 'surge' "
                    "AND state = 'completed'",
                    b) == 20);
  }

  // (c) surge goes down while a job only surge may take is sent: two failed sends open its breaker.
  fleet.patch("surge", {{"outage", true}});
  auto job_c = make_job(100, 1, "general");
  job_c["vendors"] = {{"allow", json::array({"surge"})}};
  const auto c = fleet.submit(port, job_c);
  REQUIRE(eventually([&] { return breaker_state(fleet, port, "surge") == "open"; }, seconds(30)));
  CHECK(fleet.sim_stats()["surge"]["outage_rejections"].get<long>() >= 2);

  // A general job now has scale alone: surge's breaker is open, scale-small denied, so scale's
  // share cap cannot hold (it stays eligible, and the decision says the cap is unsatisfiable).
  const auto d = fleet.submit(port, make_job(20, 1, "general"));
  REQUIRE(fleet.wait_until_finished(port, d) == "completed");
  {
    const auto plans = of_kind(routing_log(fleet, port, d), "plan");
    REQUIRE(!plans.empty());
    for (const auto& plan : plans) {
      INFO(plan.dump(2));
      const auto surge = vendor_line(plan, "surge");
      CHECK(surge["eligible"] == false);
      CHECK(surge["removed_by"] == "breaker_open");
      CHECK(vendor_line(plan, "scale-small")["removed_by"] == "team_deny_list");
      CHECK(vendor_line(plan, "scale")["eligible"] == true);
      CHECK(plan["decision"]["cap_unsatisfiable"] == true);
      reasons_seen.insert(surge["removed_by"].get<std::string>());
    }
    INFO(describe_assignments(fleet.db_url(), d));
    CHECK(count_sql(fleet.db_url(), "SELECT count(*) FROM assignments WHERE job_id = $1 AND vendor_id <> 'scale'", d) ==
          0);
  }
  CHECK(reasons_seen == std::set<std::string>{"over_share_cap", "team_deny_list", "breaker_open"});

  // The outage lost none of C's items: no other vendor may take them, so they wait at surge
  // instead of being moved nowhere (the rebalancer ran several times meanwhile).
  {
    const auto c_job = fleet.get(port, "/v1/jobs/" + c);
    INFO(c_job.dump());
    CHECK(c_job["counts"]["unlabeled"] == 0);
    CHECK(count_sql(fleet.db_url(), "SELECT count(*) FROM assignments WHERE job_id = $1 AND error_class = 'moved'",
                    c) == 0);
  }

  fleet.patch("surge", {{"outage", false}});
  const auto c_status = fleet.get(port, "/v1/jobs/" + c)["status"].get<std::string>();
  if (c_status == "queued" || c_status == "running") {
    auto r = http_request(port, "POST", "/v1/jobs/" + c + "/cancel", "", fleet.auth());
    INFO(r.body);
    CHECK(r.status == 200);
  }
}

namespace {

struct Settles {
  std::map<std::string, std::int64_t> per_vendor;
  long assignments_settled_twice = 0;
  std::int64_t held = 0;
};
Settles settles(const std::string& db_url, const std::string& job_id) {
  Settles s;
  pqxx::connection c(db_url);
  pqxx::nontransaction tx(c);
  for (const auto& r : tx.exec_params(
           "SELECT vendor_id, sum(amount_micros) FROM ledger_entries WHERE job_id = $1 AND kind = 'settle' GROUP BY 1",
           job_id))
    s.per_vendor[r[0].as<std::string>()] = r[1].as<std::int64_t>();
  s.assignments_settled_twice =
      tx.exec_params1("SELECT count(*) FROM (SELECT assignment_id FROM ledger_entries WHERE job_id = $1 "
                      "AND kind = 'settle' GROUP BY 1 HAVING count(*) > 1) x",
                      job_id)[0]
          .as<long>();
  s.held = tx.exec_params1(
                 "SELECT coalesce(sum(CASE kind WHEN 'hold' THEN amount_micros WHEN 'settle' THEN -releases_micros "
                 "ELSE -amount_micros END), 0) FROM ledger_entries WHERE job_id = $1",
                 job_id)[0]
               .as<std::int64_t>();
  return s;
}

}  // namespace

TEST_CASE("routing e2e: a vendor's outage opens its breaker, its unstarted work moves, and nothing is labeled or "
          "billed twice",
          "[.db][e2e-routing]") {
  // Every eligible vendor gets at least 30% of the plan, so scale-small has plenty queued; the
  // whole job is planned at once; the rebalancer looks often.
  Fleet fleet(50, 2000, [](json& config) {
    config["routing"] = {{"min_share", 0.3},
                         {"breaker_consecutive_failures", 2},
                         {"breaker_cooldown_ms", 3000},
                         {"rebalance_interval_ms", 200}};
    config["dispatch"]["plan_ahead_items"] = 100000;
    config["dispatch"]["backoff_initial_ms"] = 20;
    config["dispatch"]["backoff_max_ms"] = 500;
  });
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  fleet.patch("scale-small", {{"outage", true}});
  const int kItems = 500;
  const auto job_id = fleet.submit(port, make_job(kItems, 1, "general"));

  REQUIRE(eventually([&] { return breaker_state(fleet, port, "scale-small") == "open"; }, seconds(30), milliseconds(20)));
  // The planner gave scale-small its share before anything was known about it.
  {
    const auto plans = of_kind(routing_log(fleet, port, job_id), "plan");
    REQUIRE(plans.size() == 1);
    CHECK(plans[0]["items"] == kItems);
    CHECK(vendor_line(plans[0], "scale-small")["chosen"].get<long>() >= kItems / 4);
  }
  // The rebalancer moves scale-small's never-sent units and logs why.
  json moved_decision;
  REQUIRE(eventually(
      [&] {
        for (const auto& d : of_kind(routing_log(fleet, port, job_id), "rebalance"))
          if (d["decision"]["vendor"] == "scale-small" && d["decision"]["reason"] == "breaker_open" &&
              d["decision"]["moved_now"].get<long>() > 0) {
            moved_decision = d;
            return true;
          }
        return false;
      },
      seconds(30), milliseconds(200)));
  INFO(moved_decision.dump());
  const long moved = count_sql(fleet.db_url(),
                               "SELECT count(*) FROM assignments WHERE job_id = $1 AND vendor_id = 'scale-small' "
                               "AND error_class = 'moved' AND vendor_task_id IS NULL",
                               job_id);
  CHECK(moved >= moved_decision["decision"]["moved_now"].get<long>());
  CHECK(fleet.sim_stats()["scale-small"]["outage_rejections"].get<long>() >= 2);

  fleet.patch("scale-small", {{"outage", false}});
  INFO(describe_assignments(fleet.db_url(), job_id));
  REQUIRE(fleet.wait_until_finished(port, job_id) == "completed");

  // Every item has exactly one completed judgment and a label.
  CHECK(count_sql(fleet.db_url(), "SELECT count(*) FROM job_items WHERE job_id = $1 AND state = 'labeled'", job_id) ==
        kItems);
  CHECK(count_sql(fleet.db_url(),
                  "SELECT count(*) FROM (SELECT item_id FROM assignments WHERE job_id = $1 AND state = 'completed' "
                  "GROUP BY 1 HAVING count(*) = 1) x",
                  job_id) == kItems);
  CHECK(count_sql(fleet.db_url(), "SELECT count(*) FROM assignments WHERE job_id = $1 AND state = 'completed'",
                  job_id) == kItems);
  CHECK(all_results(fleet, port, job_id).size() == static_cast<std::size_t>(kItems));

  // Nothing was created twice at a vendor: each task vendor-sim created is an assignment the
  // broker finished there (completed, or canceled at the vendor).
  const auto stats = fleet.sim_stats();
  {
    pqxx::connection c(fleet.db_url());
    pqxx::nontransaction tx(c);
    for (const std::string vendor : {"scale", "scale-small", "surge", "mercor"}) {
      INFO(vendor << ": " << stats[vendor].dump());
      const auto finished = tx.exec_params1(
                                  "SELECT count(*) FROM assignments WHERE job_id = $1 AND vendor_id = $2 "
                                  "AND state IN ('completed', 'canceled') AND vendor_task_id IS NOT NULL",
                                  job_id, vendor)[0]
                                .as<long>();
      CHECK(stats[vendor]["tasks_created"].get<long>() == finished);
      CHECK(stats[vendor]["duplicate_creates_refused"].get<long>() == 0);
    }
  }
  // scale-small did work once it was back (its breaker's probe closed it again).
  CHECK(stats["scale-small"]["completed"].get<long>() > 0);
  CHECK(breaker_state(fleet, port, "scale-small") == "closed");

  // The ledger settled each assignment at most once, and per vendor exactly what vendor-sim charged.
  const auto s = settles(fleet.db_url(), job_id);
  const auto charged = fleet.sim_stats();
  CHECK(s.assignments_settled_twice == 0);
  CHECK(s.held == 0);
  for (const std::string vendor : {"scale", "scale-small", "surge"}) {
    INFO(vendor);
    const auto settled = s.per_vendor.count(vendor) ? s.per_vendor.at(vendor) : 0;
    CHECK(settled == charged[vendor]["charged_micros"].get<std::int64_t>());
  }
}

TEST_CASE("routing e2e: a vendor whose quality drops mid-job falls below the job's floor and loses its share",
          "[.db][e2e-routing]") {
  // Medical work: scale is the cheapest and at first the best; scale-small and surge stay good.
  // Each vendor holds every response for 200 ms and batches are small, so sending the job takes
  // a while (about 100 units a second) while each answer is back within a few hundred ms: the
  // planner keeps only ~60 units of the job unsent, so routing decides throughout the job, and
  // evidence after the drop arrives while most of the job is still to be planned.
  auto scenario = fleet_scenario();
  scenario["worker_threads"] = 48;
  const std::map<std::string, double> medical = {{"scale", 0.95}, {"scale-small", 0.9}, {"surge", 0.95}};
  for (auto& v : scenario["vendors"]) {
    const auto id = v["id"].get<std::string>();
    if (!medical.count(id)) continue;
    v["accuracy"] = {{"*", accuracy_of(id)}, {"medical", medical.at(id)}};
    v["faults"] = {{"hang_rate", 1.0}, {"hang_ms", 200}};
  }
  // Gold in about a quarter of each batch; the rebalancer looks often.
  Fleet fleet(10, 2000,
              [](json& config) {
                config["quality"] = {{"gold_rate", 0.3}, {"scores_cache_ms", 0}};
                config["dispatch"]["plan_ahead_items"] = 60;
                config["dispatch"]["plan_chunk_items"] = 60;
                config["routing"] = {{"rebalance_interval_ms", 300}};
              },
              scenario);
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  const int kItems = 2400;
  auto job = with_gold(make_job(kItems, 1, "general"), 60);
  job["domain"] = "medical";
  job["quality"] = {{"min_vendor_accuracy", 0.8}};
  const auto job_id = fleet.submit(port, job);

  const std::string completed_real =
      "SELECT count(*) FROM assignments a " + kReal + "AND a.state = 'completed'";
  REQUIRE(eventually([&] { return count_sql(fleet.db_url(), completed_real, job_id) >= kItems / 3; }, seconds(60)));
  long items_at_drop = 0;
  double concentration_at_drop = -1;
  REQUIRE(eventually(
      [&] {
        concentration_at_drop = concentration_share(fleet, port, "medical", "scale", &items_at_drop);
        return concentration_at_drop > 0;
      },
      seconds(10)));
  fleet.patch("scale", {{"accuracy", {{"*", 0.4}}}});
  std::string dropped_at;
  {
    pqxx::connection c(fleet.db_url());
    pqxx::nontransaction tx(c);
    dropped_at = tx.exec("SELECT now()::text")[0][0].as<std::string>();
  }
  INFO("scale's concentration share at the drop " << concentration_at_drop << " of " << items_at_drop);

  // The first decision that leaves scale out for its quality (a plan or a rebalancing move).
  long floor_decision = 0;
  REQUIRE(eventually(
      [&] {
        pqxx::connection c(fleet.db_url());
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params(
            "SELECT id FROM routing_decisions WHERE job_id = $1 AND ("
            "  decision @> '{\"vendors\": [{\"vendor\": \"scale\", \"removed_by\": \"below_quality_floor\"}]}' OR "
            "  decision @> '{\"vendor\": \"scale\", \"reason\": \"below_quality_floor\"}') ORDER BY id LIMIT 1",
            job_id);
        if (r.empty()) return false;
        floor_decision = r[0][0].as<long>();
        return true;
      },
      seconds(60), milliseconds(200)));
  REQUIRE(fleet.wait_until_finished(port, job_id) == "completed");

  // The API shows that decision with its reason.
  const auto log = routing_log(fleet, port, job_id);
  const auto logged = std::find_if(log.begin(), log.end(), [&](const json& d) { return d["id"] == floor_decision; });
  REQUIRE(logged != log.end());
  INFO(logged->dump(2));
  if ((*logged)["kind"] == "plan") {
    const auto scale = vendor_line(*logged, "scale");
    CHECK(scale["removed_by"] == "below_quality_floor");
    CHECK(scale["detail"].get<std::string>().find("< floor 0.80") != std::string::npos);
  } else {
    CHECK((*logged)["kind"] == "rebalance");
    CHECK((*logged)["decision"]["reason"] == "below_quality_floor");
  }
  // Planning went on after it, and its decisions leave scale out for its quality.
  long plans_after = 0, plans_without_scale = 0;
  for (const auto& d : log) {
    if (d["kind"] != "plan" || d["id"].get<long>() <= floor_decision) continue;
    ++plans_after;
    const auto scale = vendor_line(d, "scale");
    plans_without_scale += scale["removed_by"] == "below_quality_floor" && scale["chosen"] == 0;
  }
  INFO(plans_without_scale << " of " << plans_after << " plan decisions after it leave scale out for its quality");
  CHECK(plans_after > 0);
  CHECK(plans_without_scale >= plans_after * 9 / 10);

  // Scale's share of the real judgments planned (assignments created, moved ones included):
  // before the drop it takes a large share (cheapest and best); from the drop on it is less than
  // half of that, as only what was planned before its evidence fell still goes to it; and once the
  // floor removed it, planning and re-routing give it next to nothing (under 10%: its interval
  // sits near the floor at first, so a lucky gold streak may let it back for a chunk).
  std::string floor_at;
  {
    pqxx::connection c(fleet.db_url());
    pqxx::nontransaction tx(c);
    floor_at = tx.exec_params1("SELECT created_at::text FROM routing_decisions WHERE id = $1", floor_decision)[0]
                   .as<std::string>();
  }
  // Scale's and everyone's real assignments created before (`op` "<") or from (">=") `at`.
  auto planned = [&](const std::string& op, const std::string& at) {
    pqxx::connection c(fleet.db_url());
    pqxx::nontransaction tx(c);
    const auto r = tx.exec_params1("SELECT count(*) FILTER (WHERE a.vendor_id = 'scale'), count(*) FROM assignments a " +
                                       kReal + "AND a.created_at " + op + " $2::timestamptz",
                                   job_id, at);
    return std::make_pair(r[0].as<double>(), r[1].as<double>());
  };
  const auto before = planned("<", dropped_at), after_drop = planned(">=", dropped_at),
             after_floor = planned(">=", floor_at);
  INFO("scale's real assignments before the drop " << before.first << " of " << before.second << ", after it "
                                                   << after_drop.first << " of " << after_drop.second
                                                   << ", after the floor " << after_floor.first << " of "
                                                   << after_floor.second);
  REQUIRE(before.second > 0);
  REQUIRE(after_drop.second > 0);
  REQUIRE(after_floor.second > 0);
  CHECK(before.first / before.second > 0.25);
  CHECK(after_drop.first / after_drop.second < before.first / before.second / 2);
  CHECK(after_floor.first / after_floor.second < 0.10);

  // The market view agrees: scale's share of medical judgments fell.
  double concentration_at_end = 1;
  CHECK(eventually(
      [&] {
        concentration_at_end = concentration_share(fleet, port, "medical", "scale");
        return concentration_at_end >= 0 && concentration_at_end < concentration_at_drop;
      },
      seconds(15), milliseconds(200)));
  INFO("scale's concentration share at the end " << concentration_at_end);
  CHECK(concentration_at_end < concentration_at_drop);

  // Nothing lost: every real item labeled by exactly one completed judgment.
  CHECK(count_sql(fleet.db_url(),
                  "SELECT count(*) FROM job_items WHERE job_id = $1 AND gold_answer IS NULL AND state = 'labeled'",
                  job_id) == kItems);
  CHECK(count_sql(fleet.db_url(), completed_real, job_id) == kItems);
  CHECK(all_results(fleet, port, job_id).size() == static_cast<std::size_t>(kItems));
}
