// Scenario loading: the shipped default is valid; bad input is one line naming the JSON path.
#include "vendors/sim/scenario.hpp"

#include <catch2/catch.hpp>

using namespace labelbroker::vendors::sim;

namespace {

std::string error_of(const std::string& text) {
  try {
    parse_scenario(text, "s.json");
  } catch (const ScenarioError& e) {
    return e.what();
  }
  return "";
}

const std::string kVendor =
    R"({"id":"v","kind":"scale","api_key":"k","callback_secret":"s","prices_micros":{"categorization":1}})";

}  // namespace

TEST_CASE("scenario: the default scenario loads with the four required vendors", "[sim][scenario]") {
  Scenario s = load_scenario(std::string(LABELBROKER_SOURCE_DIR) + "/config/sim/default.json");
  REQUIRE(s.vendors.size() == 4);
  std::map<std::string, Kind> kinds;
  for (const auto& v : s.vendors) kinds[v.id] = v.kind;
  CHECK(kinds.at("scale") == Kind::scale);
  CHECK(kinds.at("scale-small") == Kind::scale);
  CHECK(kinds.at("surge") == Kind::surge);
  CHECK(kinds.at("mercor") == Kind::mercor);
  const auto& scale = s.vendors[0];
  CHECK(scale.behaviour.accuracy.lookup("general", "classification", "general") == Approx(0.9));
  CHECK(scale.behaviour.accuracy.lookup("medical", "classification", "expert") == Approx(0.7));
  const auto& mercor = s.vendors[3];
  CHECK(mercor.behaviour.accuracy.lookup("legal", "classification", "expert") == Approx(0.95));
}

TEST_CASE("scenario: the labelbroker-eval scenarios load, drift scopes and the eval section are kept",
          "[sim][scenario]") {
  for (const char* name : {"steady", "quality-drop", "outage", "new-vendor"}) {
    INFO(name);
    Scenario s = load_scenario(std::string(LABELBROKER_SOURCE_DIR) + "/config/scenarios/" + name + ".json");
    CHECK(s.eval.is_object());
  }
  Scenario s = parse_scenario(
      R"({"eval":{"items":10},"vendors":[{"id":"v","kind":"surge","api_key":"k","callback_secret":"s",
          "drift":[{"after_s":5,"accuracy_delta":-0.3,"domain":"medical","task_type":"classification"}]}]})",
      "s.json");
  CHECK(s.eval["items"] == 10);
  const auto& rule = s.vendors[0].behaviour.drift.at(0);
  CHECK(rule.applies_to("medical", "classification"));
  CHECK_FALSE(rule.applies_to("medical", "rating"));
  CHECK_FALSE(rule.applies_to("general", "classification"));
  CHECK(DriftRule{}.applies_to("anything", "at all"));
}

TEST_CASE("scenario: accuracy keys, most specific wins", "[sim][scenario]") {
  Scenario s = parse_scenario(R"({"vendors":[{"id":"v","kind":"scale","api_key":"k","callback_secret":"s",
      "prices_micros":{},"accuracy":{"*":0.5,"medical":0.6,"*/preference":0.7,"medical/preference":0.8,
      "medical/*/expert":0.9}}]})",
                              "s.json");
  const auto& a = s.vendors[0].behaviour.accuracy;
  CHECK(a.lookup("legal", "classification", "general") == Approx(0.5));
  CHECK(a.lookup("medical", "classification", "general") == Approx(0.6));
  CHECK(a.lookup("legal", "preference", "general") == Approx(0.7));
  CHECK(a.lookup("medical", "preference", "general") == Approx(0.8));
  CHECK(a.lookup("medical", "classification", "expert") == Approx(0.9));
  CHECK(a.lookup("medical", "preference", "expert") == Approx(0.8));  // domain+type (6) beats domain+expertise (5)
}

TEST_CASE("scenario: errors name the JSON path", "[sim][scenario]") {
  CHECK(error_of("{").rfind("s.json: invalid JSON: ", 0) == 0);
  CHECK(error_of("{}") == "s.json: $.vendors: is required");
  CHECK(error_of(R"({"vendors":[]})") == "s.json: $.vendors: expected a non-empty array");
  CHECK(error_of(R"({"vendors":[)" + kVendor + "," + kVendor + "]}") ==
        "s.json: $.vendors[1].id: duplicate vendor id \"v\"");
  CHECK(error_of(R"({"vendors":[{"id":"v","kind":"acme","api_key":"k","callback_secret":"s"}]})") ==
        "s.json: $.vendors[0].kind: must be one of scale, surge, mercor");
  CHECK(error_of(R"({"vendors":[{"id":"v","kind":"scale","api_key":"k","callback_secret":"s"}]})") ==
        "s.json: $.vendors[0].prices_micros: is required for kind scale");
  CHECK(error_of(R"({"vendors":[{"id":"a b","kind":"scale","api_key":"k","callback_secret":"s"}]})") ==
        "s.json: $.vendors[0].id: may contain only letters, digits, '-' and '_' (it is a URL prefix)");
  auto with = [](const std::string& extra) {
    return error_of(R"({"vendors":[{"id":"v","kind":"scale","api_key":"k","callback_secret":"s","prices_micros":{},)" +
                    extra + "}]}");
  };
  CHECK(with(R"("accuracy":{"medical":1.5})") == "s.json: $.vendors[0].accuracy.medical: must be between 0 and 1");
  CHECK(with(R"("faults":{"rate_429":"often"})") ==
        "s.json: $.vendors[0].faults.rate_429: expected a number, got string");
  CHECK(with(R"("latency":{"p50_ms":10})") == "s.json: $.vendors[0].latency: a lognormal needs both p50_ms and p95_ms");
  CHECK(with(R"("outages":[{"start_s":10,"end_s":5}])") ==
        "s.json: $.vendors[0].outages[0].end_s: must be after start_s");
  CHECK(with(R"("drift":[{"after_tasks":1,"at":"2026-01-01T00:00:00Z","accuracy_delta":0.1}])") ==
        "s.json: $.vendors[0].drift[0]: needs exactly one of after_tasks, after_s, at");
  CHECK(with(R"("drift":[{"after_s":1,"accuracy_delta":-0.1,"domain":""}])") ==
        "s.json: $.vendors[0].drift[0].domain: must not be empty");
  CHECK(with(R"("drift":[{"after_s":1,"accuracy_delta":-0.1,"task_type":7}])") ==
        "s.json: $.vendors[0].drift[0].task_type: expected a string, got integer");
  CHECK(with(R"("colour":"red")") == "s.json: $.vendors[0].colour: unknown key");
  CHECK(with(R"("experts":[])") == "s.json: $.vendors[0].experts: only for kind mercor");
  CHECK(error_of(R"({"listen":"nowhere","vendors":[)" + kVendor + "]}") ==
        "s.json: $.listen: expected \"host:port\" with a port from 0 to 65535, got \"nowhere\"");
  CHECK(error_of(R"({"seed":-1,"vendors":[)" + kVendor + "]}").rfind("s.json: $.seed: must be between 0 and", 0) == 0);
  CHECK(error_of(R"({"eval":[],"vendors":[)" + kVendor + "]}") == "s.json: $.eval: expected an object, got array");
}

TEST_CASE("scenario: behaviour patches are all-or-nothing", "[sim][scenario]") {
  Behaviour b;
  apply_behaviour_patch(b, {{"error_rate_5xx", 0.5}, {"outage", true}, {"fail_next", {{"count", 2}}}});
  CHECK(b.faults.error_rate_5xx == 0.5);
  CHECK(b.outage);
  CHECK(b.fail_next.count == 2);
  CHECK(b.fail_next.status == 500);
  try {
    apply_behaviour_patch(b, {{"outage", false}, {"faults", {{"hang_rate", -1}}}});
    FAIL("expected a ScenarioError");
  } catch (const ScenarioError& e) {
    CHECK(std::string(e.what()) == "$.faults.hang_rate: must be between 0 and 1");
  }
  CHECK(b.outage);  // unchanged
}
