// Quality and cost end to end, against vendor-sim: the ledger reconciles with what the vendors
// charged, budgets hold against racing dispatchers, gold measures each vendor's accuracy, and the
// scores API reports it with honest intervals.
#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "auth/api_key.hpp"
#include "db/team_store.hpp"
#include "support/api_keys.hpp"
#include "support/fleet.hpp"
#include "support/http_client.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using json = nlohmann::json;

namespace {

// The ledger's totals, straight from its entries.
struct LedgerSums {
  std::map<std::string, std::int64_t> settled_per_vendor;
  std::int64_t holds = 0, settles = 0, settle_releases = 0, releases = 0;
  std::int64_t held() const { return holds - settle_releases - releases; }
};
LedgerSums ledger_sums(const std::string& db_url, const std::string& job_id) {
  LedgerSums s;
  pqxx::connection c(db_url);
  pqxx::nontransaction tx(c);
  for (const auto& r : tx.exec_params(
           "SELECT kind, vendor_id, sum(amount_micros), sum(releases_micros) FROM ledger_entries "
           "WHERE job_id = $1 GROUP BY 1, 2",
           job_id)) {
    const auto kind = r[0].as<std::string>();
    const auto amount = r[2].as<std::int64_t>();
    if (kind == "hold") s.holds += amount;
    if (kind == "release") s.releases += amount;
    if (kind == "settle") {
      s.settles += amount;
      s.settle_releases += r[3].as<std::int64_t>();
      s.settled_per_vendor[r[1].as<std::string>()] += amount;
    }
  }
  return s;
}

// Every budget account equals what the ledger's entries imply for it, once the broker has
// applied the pending settle and release deltas (its maintenance loop does, every 100 ms here).
void check_accounts_reconcile(const std::string& db_url) {
  pqxx::connection c(db_url);
  pqxx::nontransaction tx(c);
  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  while (tx.exec("SELECT count(*) FROM account_deltas")[0][0].as<long>() > 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(50));
  REQUIRE(tx.exec("SELECT count(*) FROM account_deltas")[0][0].as<long>() == 0);
  auto rows = tx.exec(
      "WITH e AS (SELECT kind, amount_micros, releases_micros, "
      "                  ARRAY['job:' || job_id, 'team:' || team_id || ':' || to_char(month, 'YYYY-MM'), "
      "                        'vendor:' || vendor_id || ':' || to_char(month, 'YYYY-MM')] AS keys "
      "           FROM ledger_entries), "
      "k AS (SELECT key, sum(CASE kind WHEN 'hold' THEN amount_micros WHEN 'settle' THEN -releases_micros "
      "                                ELSE -amount_micros END) AS held, "
      "             sum(CASE kind WHEN 'settle' THEN amount_micros ELSE 0 END) AS spent "
      "      FROM e, unnest(keys) AS key GROUP BY key) "
      "SELECT coalesce(a.key, k.key), coalesce(a.held_micros, 0), coalesce(k.held, 0), coalesce(a.spent_micros, 0), "
      "       coalesce(k.spent, 0) "
      "FROM budget_accounts a FULL JOIN k ON k.key = a.key");
  REQUIRE(rows.size() > 0);
  for (const auto& r : rows) {
    INFO("account " << r[0].as<std::string>());
    CHECK(r[1].as<std::int64_t>() == r[2].as<std::int64_t>());
    CHECK(r[3].as<std::int64_t>() == r[4].as<std::int64_t>());
  }
}

long count_sql(const std::string& db_url, const std::string& sql, const std::string& job_id) {
  pqxx::connection c(db_url);
  pqxx::nontransaction tx(c);
  return tx.exec_params1(sql, job_id)[0].as<long>();
}

// Waits (bounded: a hang guard) until `sql` counts `want` or more.
bool wait_for_count(const std::string& db_url, const std::string& sql, const std::string& job_id, long want,
                    seconds limit = seconds(120)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (count_sql(db_url, sql, job_id) >= want) return true;
    std::this_thread::sleep_for(milliseconds(100));
  }
  return false;
}

std::int64_t sim_charged(Fleet& fleet, const std::vector<std::string>& vendors) {
  auto stats = fleet.sim_stats();
  std::int64_t total = 0;
  for (const auto& v : vendors) total += stats[v]["charged_micros"].get<std::int64_t>();
  return total;
}

}  // namespace

TEST_CASE("ledger e2e: holds, settles and releases reconcile with vendor-sim's charges after retries and a cancel",
          "[.db][e2e-ledger]") {
  Fleet fleet;
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  // Retries: a third of scale's requests fail with 500 (the batch is re-sent, never re-billed).
  // A cancel: surge's tasks stay queued, so canceling the job cancels them at surge.
  fleet.patch("scale", {{"error_rate_5xx", 0.3}});
  fleet.patch("surge", {{"paused", true}});
  const auto job_id = fleet.submit(port, with_gold(make_job(300, 2, "general"), 20));

  // Wait until every real unit reached its vendor and scale and scale-small answered theirs.
  REQUIRE(wait_for_count(fleet.db_url(),
                         "SELECT count(*) FROM assignments a JOIN job_items i USING (job_id, item_id) "
                         "WHERE a.job_id = $1 AND i.gold_answer IS NULL AND a.state IN ('submitted', 'completed')",
                         job_id, 600));
  REQUIRE(wait_for_count(fleet.db_url(),
                         "SELECT (count(*) = 0)::int FROM assignments WHERE job_id = $1 AND vendor_id <> 'surge' "
                         "AND state IN ('queued', 'sending', 'submitted')",
                         job_id, 1));
  auto r = http_request(port, "POST", "/v1/jobs/" + job_id + "/cancel", "", fleet.auth());
  REQUIRE(r.status == 200);
  // The canceller cancels surge's queued tasks at surge; then nothing is in flight.
  INFO(describe_assignments(fleet.db_url(), job_id));
  REQUIRE(wait_for_count(fleet.db_url(),
                         "SELECT (count(*) = 0)::int FROM assignments WHERE job_id = $1 "
                         "AND state IN ('queued', 'sending', 'submitted')",
                         job_id, 1));
  CHECK(fleet.wait_until_finished(port, job_id) == "canceled");

  const auto sums = ledger_sums(fleet.db_url(), job_id);
  auto stats = fleet.sim_stats();
  // Retries happened and cancels happened: the test exercised what it claims.
  CHECK(stats["scale"]["faults_5xx"].get<long>() > 0);
  CHECK(stats["surge"]["cancels"].get<long>() > 0);
  CHECK(sums.releases > 0);
  // What the ledger settled per vendor is exactly what vendor-sim charged, to the micro-dollar.
  for (const auto& vendor : {"scale", "scale-small", "surge"}) {
    INFO(vendor);
    const auto settled = sums.settled_per_vendor.count(vendor) ? sums.settled_per_vendor.at(vendor) : 0;
    CHECK(settled == stats[vendor]["charged_micros"].get<std::int64_t>());
  }
  // Every hold was closed: settled or released, nothing left held.
  CHECK(sums.held() == 0);
  CHECK(count_sql(fleet.db_url(),
                  "SELECT count(*) FROM ledger_entries h WHERE h.job_id = $1 AND h.kind = 'hold' AND NOT EXISTS "
                  "(SELECT 1 FROM ledger_entries c WHERE c.assignment_id = h.assignment_id AND c.kind <> 'hold')",
                  job_id) == 0);
  // Gold was charged to the job as QA overhead.
  CHECK(count_sql(fleet.db_url(),
                  "SELECT count(*) FROM ledger_entries WHERE job_id = $1 AND kind = 'settle' AND gold", job_id) > 0);
  check_accounts_reconcile(fleet.db_url());

  // The ledger is append-only.
  pqxx::connection c(fleet.db_url());
  pqxx::nontransaction tx(c);
  CHECK_THROWS(tx.exec("UPDATE ledger_entries SET amount_micros = 0"));
  CHECK_THROWS(tx.exec("DELETE FROM ledger_entries"));
}

TEST_CASE("ledger e2e: a $5 budget is never overspent, even by two brokers racing, and a raised budget resumes the job",
          "[.db][e2e-ledger]") {
  // Several dispatchers per vendor in each of two brokers, small batches: many claims race for
  // the same budget.
  Fleet fleet(5, 2000, [](json& config) { config["dispatch"]["workers_per_vendor"] = 3; });
  const auto port_a = free_port(), port_b = free_port();
  // Brokers sharing a database share a public URL (b's here), as behind a load balancer.
  auto broker_a = fleet.start_broker(port_a, port_b);
  auto broker_b = fleet.start_broker(port_b);
  auto job = with_gold(make_job(400, 1, "general"), 10);
  job["budget_usd"] = "5.00";
  const auto job_id = fleet.submit(port_a, job);

  // Prices 0.04, 0.05 and 0.15: $5 buys somewhere near 60 units, far fewer than 400.
  const auto deadline = std::chrono::steady_clock::now() + seconds(120);
  std::string status;
  while (std::chrono::steady_clock::now() < deadline) {
    status = fleet.get(port_a, "/v1/jobs/" + job_id)["status"].get<std::string>();
    const auto sums = ledger_sums(fleet.db_url(), job_id);
    REQUIRE(sums.holds - sums.settle_releases - sums.releases + sums.settles <= 5000000);
    if (status == "budget_exhausted") break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  REQUIRE(status == "budget_exhausted");
  CHECK(fleet.get(port_a, "/v1/jobs/" + job_id)["budget"]["reason"] == "job budget");
  // Whatever is still in flight lands; the job spends at most its budget, and close to all of it.
  REQUIRE(wait_for_count(fleet.db_url(),
                         "SELECT (count(*) = 0)::int FROM assignments WHERE job_id = $1 AND state IN ('sending', 'submitted')",
                         job_id, 1));
  auto sums = ledger_sums(fleet.db_url(), job_id);
  CHECK(sums.settles + sums.held() <= 5000000);
  CHECK(sums.settles > 5000000 - 150000 * 2);
  CHECK(sim_charged(fleet, {"scale", "scale-small", "surge"}) <= 5000000);
  CHECK(count_sql(fleet.db_url(), "SELECT count(*) FROM assignments WHERE job_id = $1 AND state = 'paused'", job_id) > 0);
  check_accounts_reconcile(fleet.db_url());

  // Raising the budget resumes the job; it completes and stays within the new budget.
  auto r = http_request(port_b, "PATCH", "/v1/jobs/" + job_id, json{{"budget_usd", "100.00"}}.dump(), fleet.auth());
  INFO(r.body);
  REQUIRE(r.status == 200);
  CHECK(json::parse(r.body)["status"] == "running");
  CHECK(fleet.wait_until_finished(port_a, job_id) == "completed");
  sums = ledger_sums(fleet.db_url(), job_id);
  CHECK(sums.held() == 0);
  CHECK(sums.settles <= 100000000);
  CHECK(sums.settles == sim_charged(fleet, {"scale", "scale-small", "surge"}));
  check_accounts_reconcile(fleet.db_url());
}

TEST_CASE("quality e2e: gold measures each vendor's accuracy per domain, the scores API reports it with intervals, "
          "kappa and an ETag",
          "[.db][e2e-quality]") {
  // Each vendor is better at one domain than the other, and the ranking differs between them.
  const std::map<std::string, std::map<std::string, double>> accuracy = {
      {"general", {{"scale", 0.9}, {"scale-small", 0.8}, {"surge", 0.95}}},
      {"medical", {{"scale", 0.75}, {"scale-small", 0.92}, {"surge", 0.85}}}};
  auto scenario = fleet_scenario();
  for (auto& v : scenario["vendors"]) {
    const auto id = v["id"].get<std::string>();
    if (id == "mercor") continue;
    v["accuracy"] = {{"*", accuracy.at("general").at(id)}, {"medical", accuracy.at("medical").at(id)}};
  }
  // Gold as often as real work, so a job of 900 items gives each vendor about 900 gold
  // judgments; scores are computed fresh on every request.
  Fleet fleet(100, 2000,
              [](json& config) {
                config["quality"] = {{"gold_rate", 1.0}, {"scores_cache_ms", 0}};
                config["dispatch"]["workers_per_vendor"] = 2;
              },
              scenario);
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  std::map<std::string, std::string> job_of;
  for (const auto& [domain, _] : accuracy) {
    auto job = with_gold(make_job(900, 3, "general"), 60);
    job["domain"] = domain;
    job_of[domain] = fleet.submit(port, job);
  }
  for (const auto& [domain, job_id] : job_of) REQUIRE(fleet.wait_until_finished(port, job_id, seconds(300)) == "completed");

  json scores;
  for (const auto& [domain, job_id] : job_of) {
    // The broker rolls events up in its maintenance loop; wait until the scores have every answer.
    const auto deadline = std::chrono::steady_clock::now() + seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      scores = fleet.get(port, "/v1/vendors/scores?window=24h&domain=" + domain + "&task_type=classification");
      long items = 0, ds = 0;
      for (const auto& v : scores["vendors"]) {
        items += v["items"].get<long>();
        ds += v["ds_judgments"].get<long>();
      }
      if (items == 2700 && ds == 2700) break;
      std::this_thread::sleep_for(milliseconds(200));
    }
    INFO(domain << ": " << scores.dump(2));
    std::map<std::string, json> by_vendor;
    for (const auto& v : scores["vendors"]) by_vendor[v["vendor"].get<std::string>()] = v;
    for (const auto& [vendor, truth] : accuracy.at(domain)) {
      INFO(vendor << " in " << domain);
      const auto& gold = by_vendor.at(vendor)["gold_accuracy"];
      const auto n = gold["n"].get<long>(), correct = gold["correct"].get<long>();
      CHECK(n >= 700);
      // The reported interval is the Beta posterior of the counts the database holds.
      CHECK(gold["mean"].get<double>() == Approx((1.0 + correct) / (2.0 + n)));
      CHECK(correct == count_sql(fleet.db_url(),
                                 "SELECT count(*) FROM assignments a JOIN job_items i USING (job_id, item_id) "
                                 "WHERE a.job_id = $1 AND a.vendor_id = '" + vendor + "' AND a.state = 'completed' "
                                 "AND i.gold_answer = a.answer",
                                 job_id));
      // ... and it contains the configured accuracy. A 90% interval misses in one run of ten by
      // design (its coverage is checked over 400 simulations in the unit tests), and which task
      // vendor-sim gets right depends on dispatch order, so one run of six intervals would fail
      // often: here the interval may be up to twice as wide around its mean (about 3.3 standard
      // errors, missing once in a thousand runs per interval).
      const double mean = gold["mean"].get<double>();
      CHECK(truth >= mean - 2 * (mean - gold["lower"].get<double>()));
      CHECK(truth <= mean + 2 * (gold["upper"].get<double>() - mean));
      CHECK(gold["upper"].get<double>() - gold["lower"].get<double>() < 0.06);
      CHECK(by_vendor.at(vendor)["items"] == 900);
      CHECK(by_vendor.at(vendor)["share"].get<double>() == Approx(1.0 / 3));
      // Dawid-Skene's estimate at the job's end is close to the truth too.
      CHECK(by_vendor.at(vendor)["ds_accuracy"].get<double>() == Approx(truth).margin(0.05));
      CHECK(by_vendor.at(vendor)["agreement"].size() == 2);
      for (const auto& pair : by_vendor.at(vendor)["agreement"]) {
        CHECK(pair["items"] == 900);
        CHECK(pair["kappa"].get<double>() > 0.3);
      }
      CHECK(by_vendor.at(vendor)["cost_per_item_micros"].get<long>() > 0);
      CHECK(by_vendor.at(vendor)["cost_per_correct_label_micros"].get<long>() >
            by_vendor.at(vendor)["cost_per_item_micros"].get<long>());
      CHECK(by_vendor.at(vendor)["latency_ms"]["p50"].is_number());
      CHECK(by_vendor.at(vendor)["error_rate"].get<double>() == 0.0);
    }
    // The vendors rank in the configured order, in each domain.
    std::vector<std::pair<double, std::string>> measured, configured;
    for (const auto& [vendor, truth] : accuracy.at(domain)) {
      measured.emplace_back(by_vendor.at(vendor)["gold_accuracy"]["mean"].get<double>(), vendor);
      configured.emplace_back(truth, vendor);
    }
    std::sort(measured.begin(), measured.end());
    std::sort(configured.begin(), configured.end());
    for (std::size_t i = 0; i < measured.size(); ++i) CHECK(measured[i].second == configured[i].second);
    // No work went to mercor (expert tier only): three equal shares.
    CHECK(scores["market"]["hhi"].get<double>() == Approx(10000.0 / 3).epsilon(0.001));
    CHECK(scores["market"]["effective_vendors"].get<double>() == Approx(3.0).epsilon(0.001));
  }
  const auto job_id = job_of.at("general");
  scores = fleet.get(port, "/v1/vendors/scores?window=24h");

  // Gold never appears in results.
  for (const auto& result : all_results(fleet, port, job_id))
    CHECK(result["item_id"].get<std::string>().rfind("gold", 0) != 0);
  // Spend in the scores is what the ledger settled.
  long spend = 0;
  for (const auto& v : scores["vendors"]) spend += v["spend_micros"].get<long>();
  CHECK(spend == ledger_sums(fleet.db_url(), job_of.at("general")).settles +
                     ledger_sums(fleet.db_url(), job_of.at("medical")).settles);

  // ETag and If-None-Match.
  auto first = http_request(port, "GET", "/v1/vendors/scores?window=24h", "", fleet.auth());
  REQUIRE(first.status == 200);
  const auto etag = first.header("ETag").value_or("");
  REQUIRE(!etag.empty());
  auto headers = fleet.auth();
  headers.emplace_back("If-None-Match", etag);
  auto again = http_request(port, "GET", "/v1/vendors/scores?window=24h", "", headers);
  CHECK(again.status == 304);
  CHECK(again.body.empty());

  // Concentration per domain.
  auto concentration = fleet.get(port, "/v1/concentration?window=24h");
  REQUIRE(concentration["domains"].size() == 2);
  CHECK(concentration["domains"][0]["domain"] == "general");
  CHECK(concentration["domains"][1]["domain"] == "medical");
  CHECK(concentration["domains"][1]["hhi"].get<double>() == Approx(10000.0 / 3).epsilon(0.001));
  CHECK(concentration["overall"]["items"] == 5400);

  // Viewers may read scores; bad filters are 400 with the allowed values.
  const auto viewer_key = make_key(fleet.db_url(), "team-a", auth::Role::viewer);
  const std::vector<std::pair<std::string, std::string>> viewer = {{"Authorization", "Bearer " + viewer_key}};
  CHECK(http_request(port, "GET", "/v1/vendors/scores", "", viewer).status == 200);
  CHECK(http_request(port, "GET", "/v1/concentration", "", viewer).status == 200);
  struct Bad {
    std::string query, pointer, allowed;
  };
  for (const auto& bad : {Bad{"window=1y", "/query/window", "24h, 7d, 30d, all"},
                          Bad{"domain=astrology", "/query/domain", "general, medical"},
                          Bad{"task_type=poetry", "/query/task_type", "classification, preference, rating"},
                          Bad{"expertise=guru", "/query/expertise", "general, skilled, expert"}}) {
    auto res = http_request(port, "GET", "/v1/vendors/scores?" + bad.query, "", viewer);
    INFO(res.body);
    CHECK(res.status == 400);
    auto problem = json::parse(res.body);
    REQUIRE(problem["errors"].size() == 1);
    CHECK(problem["errors"][0]["pointer"] == bad.pointer);
    CHECK(problem["errors"][0]["message"].get<std::string>().find(bad.allowed) != std::string::npos);
  }
}

TEST_CASE("ledger e2e: a vendor's monthly cap moves work to other vendors, a team's monthly cap pauses its jobs",
          "[.db][e2e-ledger]") {
  Fleet fleet(10, 2000, [](json& config) {
    for (auto& v : config["vendors"])
      if (v["id"] == "scale") v["monthly_spend_cap_usd"] = "1.00";
    // Every eligible vendor gets at least 30% of the plan, so scale is planned past its cap and
    // the claim's cap check (not only routing's) is exercised.
    config["routing"]["min_share"] = 0.3;
  });
  const auto port = free_port();
  auto broker = fleet.start_broker(port);

  // 100 items, one judgment each: scale may take $1 worth (25 units at $0.04), the rest moves on.
  const auto capped = fleet.submit(port, make_job(100, 1, "general"));
  REQUIRE(fleet.wait_until_finished(port, capped) == "completed");
  {
    pqxx::connection c(fleet.db_url());
    pqxx::nontransaction tx(c);
    const auto scale = tx.exec(
        "SELECT coalesce(sum(amount_micros) FILTER (WHERE kind = 'hold'), 0), "
        "       coalesce(sum(amount_micros) FILTER (WHERE kind = 'settle'), 0) "
        "FROM ledger_entries WHERE vendor_id = 'scale'")[0];
    CHECK(scale[0].as<long>() <= 1000000);
    CHECK(scale[1].as<long>() <= 1000000);
    CHECK(scale[1].as<long>() > 0);
    CHECK(fleet.sim_stats()["scale"]["charged_micros"].get<long>() <= 1000000);
    // Every item still got its judgment, from another vendor when scale was full.
    CHECK(tx.exec_params1("SELECT count(*) FROM job_items WHERE job_id = $1 AND state = 'labeled'", capped)[0].as<long>() ==
          100);
    CHECK(tx.exec_params1("SELECT count(*) FROM assignments WHERE job_id = $1 AND error_class = 'budget'", capped)[0]
              .as<long>() > 0);
  }

  // The team may spend $1 more this month than it has so far.
  long cap = 0;
  {
    pqxx::connection c(fleet.db_url());
    pqxx::work tx(c);
    cap = tx.exec("SELECT held_micros + spent_micros FROM budget_accounts WHERE key LIKE 'team:%'")[0][0].as<long>() +
          1000000;
    tx.exec_params0("UPDATE teams SET monthly_budget_micros = $1 WHERE name = 'team-a'", cap);
    tx.commit();
  }
  const auto paused = fleet.submit(port, make_job(200, 1, "general"));
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  json job;
  while (std::chrono::steady_clock::now() < deadline) {
    job = fleet.get(port, "/v1/jobs/" + paused);
    if (job["status"] == "budget_exhausted") break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  REQUIRE(job["status"] == "budget_exhausted");
  CHECK(job["budget"]["reason"] == "team monthly budget");
  {
    pqxx::connection c(fleet.db_url());
    pqxx::nontransaction tx(c);
    const auto team = tx.exec(
        "SELECT held_micros + spent_micros FROM budget_accounts WHERE key LIKE 'team:%'")[0][0].as<long>();
    CHECK(team <= cap);
    const auto held = tx.exec_params1(
        "SELECT coalesce(sum(amount_micros), 0) FROM ledger_entries WHERE job_id = $1 AND kind = 'hold'", paused)[0]
                          .as<long>();
    CHECK(held > 0);
    CHECK(held <= 1000000);
  }
  check_accounts_reconcile(fleet.db_url());
}
