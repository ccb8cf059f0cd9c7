// labelbroker-eval (#6): the shipped scenarios load (also as vendor-sim scenarios) and run, results
// are a function of the seed, and on the quality-drop scenario the broker's policy meets the
// issue's targets while the single-vendor baseline visibly fails.
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "tools/eval/policies.hpp"
#include "tools/eval/report.hpp"
#include "tools/eval/simulation.hpp"
#include "tools/eval/workload.hpp"
#include "vendors/sim/scenario.hpp"

using namespace labelbroker;
using eval::PolicyResult;

namespace {

vendors::sim::Scenario shipped(const std::string& name) {
  return vendors::sim::load_scenario(std::string(LABELBROKER_SOURCE_DIR) + "/config/scenarios/" + name + ".json");
}

std::string eval_error(const std::string& eval_section, const std::string& vendor_extra = "") {
  const std::string text = R"({"vendors":[{"id":"v","kind":"surge","api_key":"k","callback_secret":"s")" +
                           vendor_extra + "}],\"eval\":" + eval_section + "}";
  try {
    eval::parse_workload(vendors::sim::parse_scenario(text, "s.json"));
  } catch (const eval::EvalError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("eval: quality drop - the broker stays near the oracle and moves medical work off the vendor",
          "[eval]") {
  const auto scenario = shipped("quality-drop");
  const auto workload = eval::parse_workload(scenario);
  const PolicyResult broker = eval::simulate(scenario, workload, "labelbroker", scenario.seed);
  const PolicyResult oracle = eval::simulate(scenario, workload, "oracle", scenario.seed);
  const PolicyResult single = eval::simulate(scenario, workload, "single-vendor", scenario.seed);

  CHECK(broker.items == workload.items);
  CHECK(broker.lost == 0);
  // Final accuracy within 1 point of the oracle, cost within 15% of the oracle's.
  CHECK(oracle.accuracy - broker.accuracy <= 0.01);
  CHECK(static_cast<double>(broker.cost_micros) <= 1.15 * static_cast<double>(oracle.cost_micros));
  // No vendor above its cap in any window where two or more vendors were eligible.
  CHECK(broker.share_checks > 0);
  CHECK(broker.cap_violations == 0);
  // The dropped vendor's share of medical work falls below 10% within 300 (medical) items.
  REQUIRE(broker.has_drift);
  CHECK(broker.drift_vendor == "scale");
  REQUIRE(broker.react_items);
  CHECK(*broker.react_items <= 300);
  // Everything to the big cheap vendor: visibly worse, and it never moves.
  CHECK(oracle.accuracy - single.accuracy >= 0.03);
  CHECK_FALSE(single.react_items);
  CHECK(single.max_share == 1.0);
  CHECK(single.cap_violations > 0);

  std::vector<PolicyResult> results = {broker, oracle, single};
  const auto checks = eval::check_expectations(workload, results);
  REQUIRE_FALSE(checks.empty());
  for (const auto& c : checks) {
    INFO(c.expectation.policy << " " << c.expectation.metric);
    CHECK(c.passed);
  }
}

TEST_CASE("eval: the shipped scenarios load in vendor-sim and run every policy", "[eval]") {
  for (const char* name : {"steady", "quality-drop", "outage", "new-vendor"}) {
    INFO(name);
    const auto scenario = shipped(name);
    auto workload = eval::parse_workload(scenario);
    workload.items = 3000;
    for (const auto& policy : eval::policy_names()) {
      INFO(policy);
      const PolicyResult r = eval::simulate(scenario, workload, policy, 7);
      CHECK(r.items == 3000);
      CHECK(r.lost == 0);
      CHECK(r.accuracy > 0.8);
      CHECK(r.cost_micros > 0);
      CHECK(r.hhi_tenths.size() == 10);
      std::int64_t judged = 0;
      for (const auto& v : r.vendors) judged += v.judgments;
      CHECK(judged == r.judgments);
    }
  }
}

TEST_CASE("eval: an outage fails sends, opens the breaker and re-routes without losing items", "[eval]") {
  const auto scenario = shipped("outage");
  const auto workload = eval::parse_workload(scenario);
  for (const char* policy : {"labelbroker", "round-robin"}) {
    INFO(policy);
    const PolicyResult r = eval::simulate(scenario, workload, policy, scenario.seed);
    CHECK(r.failed_sends > 0);
    CHECK(r.reroutes > 0);
    CHECK(r.lost == 0);
    CHECK(r.items == workload.items);
  }
}

TEST_CASE("eval: results are a function of the seed", "[eval]") {
  const auto scenario = shipped("new-vendor");
  auto workload = eval::parse_workload(scenario);
  workload.items = 5000;
  const PolicyResult a = eval::simulate(scenario, workload, "labelbroker", 11);
  const PolicyResult b = eval::simulate(scenario, workload, "labelbroker", 11);
  const PolicyResult c = eval::simulate(scenario, workload, "labelbroker", 12);
  CHECK(a.correct == b.correct);
  CHECK(a.cost_micros == b.cost_micros);
  CHECK(a.hhi_tenths == b.hhi_tenths);
  for (std::size_t v = 0; v < a.vendors.size(); ++v) CHECK(a.vendors[v].judgments == b.vendors[v].judgments);
  CHECK(eval::report_json("x", workload, 11, {a}, nullptr) == eval::report_json("x", workload, 11, {b}, nullptr));
  CHECK((a.correct != c.correct || a.cost_micros != c.cost_micros));
}

TEST_CASE("eval: quotes follow the broker's adapters", "[eval]") {
  const auto scenario = shipped("quality-drop");
  std::map<std::string, const vendors::sim::VendorSpec*> by_id;
  for (const auto& v : scenario.vendors) by_id[v.id] = &v;
  CHECK(eval::quote_micros(*by_id.at("scale"), vendors::TaskType::classification) == 40000);
  CHECK(eval::quote_micros(*by_id.at("scale"), vendors::TaskType::preference) == 60000);
  CHECK(eval::quote_micros(*by_id.at("scale"), vendors::TaskType::rating) == 80000);
  CHECK(eval::quote_micros(*by_id.at("surge"), vendors::TaskType::classification) == 150000);
  // Mercor: the highest hourly rate ($120) x 3 minutes / 60.
  CHECK(eval::quote_micros(*by_id.at("mercor"), vendors::TaskType::classification) == 6000000);
}

TEST_CASE("eval: the eval section is read strictly", "[eval]") {
  CHECK(eval_error(R"({"itms":5})") == "s.json: $.eval.itms: unknown key");
  CHECK(eval_error(R"({"items":0})") == "s.json: $.eval.items: must be between 1 and 100000000");
  CHECK(eval_error(R"({"jobs":[{"domain":"medical","redundancy":9}]})") ==
        "s.json: $.eval.jobs[0].redundancy: must be between 1 and 5");
  CHECK(eval_error(R"({"jobs":[{"optimize":"speed"}]})") ==
        "s.json: $.eval.jobs[0].optimize: must be one of quality, cost, balanced");
  CHECK(eval_error(R"({"joins":{"nobody":10}})") == "s.json: $.eval.joins.nobody: no such vendor in $.vendors");
  CHECK(eval_error(R"({"expect":{"labelbroker":{"max_accuracy":"high"}}})") ==
        "s.json: $.eval.expect.labelbroker.max_accuracy: expected a number");
  CHECK(eval_error(R"({"expect":{"labelbroker":{"fastest":1}}})") ==
        "s.json: $.eval.expect.labelbroker.fastest: unknown key");
  CHECK(eval_error(R"({"routing":{"min_share":0.6,"max_share":0.5}})") ==
        "s.json: $.eval.routing.min_share: must not exceed max_share");
  CHECK(eval_error("{}", R"(,"outages":[{"start":"2026-01-01T00:00:00Z","end":"2026-01-02T00:00:00Z"}])") ==
        "s.json: $.vendors[0].outages[0]: labelbroker-eval runs on a virtual clock; use start_s/end_s, not RFC 3339 "
        "times");
  CHECK(eval_error("{}") == "");

  // A failed bound is reported as failed, and an unmeasurable one too.
  const auto scenario = shipped("steady");
  auto workload = eval::parse_workload(scenario);
  workload.items = 1000;
  workload.expect = {{"labelbroker", "min_accuracy", 0.999}, {"labelbroker", "max_react_items", 10}};
  const auto r = eval::simulate(scenario, workload, "labelbroker", 1);
  const auto checks = eval::check_expectations(workload, {r});
  REQUIRE(checks.size() == 2);
  CHECK_FALSE(checks[0].passed);
  CHECK_FALSE(checks[1].passed);
  CHECK_FALSE(checks[1].value);
}
