// Simulated behaviour: faults, capacity, outages, accuracy with a fixed seed, truth, drift,
// dropped and failing callbacks, and the control surface.
#include "sim_fixture.hpp"
#include "vendors/sim/worker_model.hpp"

using namespace labelbroker::vendors::sim::testing;
using labelbroker::vendors::sim::true_label;

namespace {

const Headers kScale = basic("scale-key");

json cat_task(const json& data, const std::string& domain = "general") {
  return {
      {"attachment", "x"}, {"categories", {"a", "b", "c", "d"}}, {"metadata", {{"domain", domain}, {"data", data}}}};
}

std::string wait_answer(Sim& sim, const std::string& id) {
  json t;
  REQUIRE(eventually([&] {
    t = sim.call_json("GET", "/sc/v1/task/" + id, nullptr, kScale);
    return t["status"] == "completed";
  }));
  return t["response"]["category"];
}

}  // namespace

TEST_CASE("behaviour: 429 with Retry-After from rate_429, and at capacity", "[sim][behaviour]") {
  Sim sim;
  sim.patch("sc", {{"rate_429", 1.0}, {"retry_after_s", 7}});
  auto limited = sim.call("POST", "/sc/v1/task/categorization", cat_task({{"t", 1}}).dump(), kScale);
  CHECK(limited.status == 429);
  CHECK(limited.header("Retry-After") == std::optional<std::string>("7"));
  CHECK(json::parse(limited.body)["status_code"] == 429);

  sim.patch("sc", {{"rate_429", 0.0}, {"paused", true}, {"capacity", {{"max_in_flight", 2}}}});
  sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"t", 1}}), kScale);
  sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"t", 2}}), kScale);
  auto full = sim.call("POST", "/sc/v1/task/categorization", cat_task({{"t", 3}}).dump(), kScale);
  CHECK(full.status == 429);
  CHECK(full.header("Retry-After") == std::optional<std::string>("7"));
  json s = sim.stats("sc");
  CHECK(s["in_flight"] == 2);
  CHECK(s["rejected_capacity"] == 1);
  CHECK(s["faults_429"] == 1);
}

TEST_CASE("behaviour: outage answers 503 in each kind's format, live and by window", "[sim][behaviour]") {
  Sim sim;
  sim.patch("sc", {{"outage", true}});
  sim.patch("sg", {{"outage", true}});
  sim.patch("mc", {{"outage", true}});
  auto a = sim.call("GET", "/sc/v1/tasks", "", kScale);
  CHECK(a.status == 503);
  CHECK(json::parse(a.body)["status_code"] == 503);
  CHECK(a.header("Retry-After"));
  auto b = sim.call("GET", "/sg/api/projects", "", basic("surge-key"));
  CHECK(b.status == 503);
  CHECK(json::parse(b.body)["error"].is_string());
  auto c = sim.call("GET", "/mc/v1/work-items/x", "", bearer("mercor-key"));
  CHECK(c.status == 503);
  CHECK(json::parse(c.body)["error"]["code"] == "service_unavailable");
  CHECK(sim.stats("sc")["in_outage"] == true);
  sim.patch("sc", {{"outage", false}});
  CHECK(sim.call("GET", "/sc/v1/tasks", "", kScale).status == 200);

  json scenario = base_scenario();
  scenario["vendors"][0]["outages"] = {{{"start_s", 0}, {"end_s", 3600}}};
  scenario["vendors"][1]["outages"] = {{{"start", "2000-01-01T00:00:00Z"}, {"end", "2000-01-02T00:00:00Z"}}};
  Sim windowed(scenario);
  CHECK(windowed.call("GET", "/sc/v1/tasks", "", kScale).status == 503);
  CHECK(windowed.call("GET", "/sg/api/projects", "", basic("surge-key")).status == 200);
}

TEST_CASE("behaviour: a 5xx after commit, then the retry's 409, then lookup by unique_id: exactly one task",
          "[sim][behaviour]") {
  Sim sim;
  sim.patch("sc", {{"fail_next", {{"count", 1}, {"status", 500}, {"after_commit", true}}}});
  json body = cat_task({{"t", 1}});
  body["unique_id"] = "asg-42";
  auto first = sim.call("POST", "/sc/v1/task/categorization", body.dump(), kScale);
  CHECK(first.status == 500);
  CHECK(json::parse(first.body)["status_code"] == 500);
  auto retry = sim.call("POST", "/sc/v1/task/categorization", body.dump(), kScale);
  CHECK(retry.status == 409);
  json found = sim.call_json("GET", "/sc/v1/tasks?unique_id=asg-42", nullptr, kScale);
  CHECK(found["docs"].size() == 1);
  CHECK(sim.stats("sc")["tasks_created"] == 1);

  // Before commit: nothing is created.
  sim.patch("sc", {{"fail_next", {{"count", 1}, {"status", 503}}}});
  body["unique_id"] = "asg-43";
  CHECK(sim.call("POST", "/sc/v1/task/categorization", body.dump(), kScale).status == 503);
  CHECK(sim.call("POST", "/sc/v1/task/categorization", body.dump(), kScale).status == 200);
  CHECK(sim.stats("sc")["tasks_created"] == 2);

  sim.patch("sc", {{"error_rate_5xx", 1.0}});
  CHECK(sim.call("GET", "/sc/v1/tasks", "", kScale).status == 500);
}

TEST_CASE("behaviour: a hang holds the response, then answers", "[sim][behaviour]") {
  Sim sim;
  sim.patch("sc", {{"hang_rate", 1.0}, {"hang_ms", 300}});
  const auto start = std::chrono::steady_clock::now();
  auto r = sim.call("GET", "/sc/v1/tasks", "", kScale);
  CHECK(r.status == 200);
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(300));
  CHECK(sim.stats("sc")["hangs"] == 1);
}

TEST_CASE("behaviour: truth comes from data._truth, else from the hash of the data", "[sim][behaviour]") {
  const std::vector<std::string> labels = {"a", "b", "c", "d"};
  CHECK(true_label({{"text", "x"}, {"_truth", "c"}}, labels) == "c");
  // The hash ignores keys starting with '_' (routing fields), so the truth is stable across vendors.
  CHECK(true_label({{"text", "x"}, {"_broker_ref", "r1"}}, labels) == true_label({{"text", "x"}}, labels));

  json scenario = base_scenario();
  scenario["vendors"][0]["accuracy"] = {{"*", 1.0}};
  Sim sim(scenario);
  const std::string with_truth =
      sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"q", 1}, {"_truth", "d"}}), kScale)["task_id"];
  const std::string hashed =
      sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"q", 2}}), kScale)["task_id"];
  CHECK(wait_answer(sim, with_truth) == "d");
  CHECK(wait_answer(sim, hashed) == true_label({{"q", 2}}, labels));
}

TEST_CASE("behaviour: accuracy is honoured per domain with a fixed seed (exact counts)", "[sim][behaviour]") {
  Sim sim;  // sc: 0.9 general, 0.7 medical, seed 7
  constexpr int kN = 400;
  json tasks = json::array();
  for (int i = 0; i < kN; ++i) {
    const std::string domain = i % 2 ? "medical" : "general";
    sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"i", i}, {"_truth", "a"}}, domain), kScale);
  }
  REQUIRE(eventually([&] { return sim.stats("sc")["completed"] == kN; }));
  int correct_general = 0, correct_medical = 0;
  std::string token;
  while (true) {
    json p =
        sim.call_json("GET", "/sc/v1/tasks?limit=100" + (token.empty() ? "" : "&next_token=" + token), nullptr, kScale);
    for (const auto& t : p["docs"]) {
      const bool right = t["response"]["category"] == "a";
      (t["metadata"]["domain"] == "medical" ? correct_medical : correct_general) += right;
    }
    if (!p["has_more"].get<bool>()) break;
    token = p["next_token"];
  }
  // Binomial(200, 0.9) and Binomial(200, 0.7); with seed 7 these exact counts come out every run.
  CHECK(correct_general == 175);
  CHECK(correct_medical == 149);
  CHECK(sim.stats("sc")["correct_answers"] == correct_general + correct_medical);

  // Same seed, same answers: a second simulator reproduces them exactly.
  Sim again;
  for (int i = 0; i < 20; ++i) {
    const std::string domain = i % 2 ? "medical" : "general";
    again.call_json("POST", "/sc/v1/task/categorization", cat_task({{"i", i}, {"_truth", "a"}}, domain), kScale);
  }
  REQUIRE(eventually([&] { return again.stats("sc")["completed"] == 20; }));
  json first20 = again.call_json("GET", "/sc/v1/tasks?limit=20", nullptr, kScale);
  json orig20 = sim.call_json("GET", "/sc/v1/tasks?limit=20", nullptr, kScale);
  for (int i = 0; i < 20; ++i) CHECK(first20["docs"][i]["response"] == orig20["docs"][i]["response"]);
}

TEST_CASE("behaviour: drift lowers accuracy after N tasks", "[sim][behaviour]") {
  json scenario = base_scenario();
  scenario["vendors"][0]["accuracy"] = {{"*", 1.0}};
  scenario["vendors"][0]["drift"] = {{{"after_tasks", 5}, {"accuracy_delta", -1.0}}};
  Sim sim(scenario);
  for (int i = 0; i < 10; ++i)
    sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"i", i}, {"_truth", "a"}}), kScale);
  REQUIRE(eventually([&] { return sim.stats("sc")["completed"] == 10; }));
  CHECK(sim.stats("sc")["correct_answers"] == 5);

  // Live accuracy change.
  sim.patch("sc", {{"accuracy", {{"*", 0.0}}}, {"drift", json::array()}});
  sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"i", 99}, {"_truth", "a"}}), kScale);
  REQUIRE(eventually([&] { return sim.stats("sc")["completed"] == 11; }));
  CHECK(sim.stats("sc")["correct_answers"] == 5);
}

TEST_CASE("behaviour: a drift rule scoped to a domain leaves other domains alone", "[sim][behaviour]") {
  json scenario = base_scenario();
  scenario["vendors"][0]["accuracy"] = {{"*", 1.0}};
  scenario["vendors"][0]["drift"] = {{{"after_tasks", 0}, {"accuracy_delta", -1.0}, {"domain", "medical"}}};
  Sim sim(scenario);
  for (int i = 0; i < 4; ++i) {
    sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"i", i}, {"_truth", "a"}}, "general"), kScale);
    sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"j", i}, {"_truth", "a"}}, "medical"), kScale);
  }
  REQUIRE(eventually([&] { return sim.stats("sc")["completed"] == 8; }));
  CHECK(sim.stats("sc")["correct_answers"] == 4);  // the general ones only
}

TEST_CASE("behaviour: dropped callbacks are never sent - failing receivers are retried then abandoned",
          "[sim][behaviour]") {
  Receiver always_fails(/*fail_first=*/1000);
  Receiver ok;
  Sim sim;
  json body = cat_task({{"i", 1}});
  body["callback_url"] = always_fails.url("x");
  sim.call_json("POST", "/sc/v1/task/categorization", body, kScale);
  REQUIRE(eventually([&] { return sim.stats("sc")["callbacks_failed"] == 1; }));
  CHECK(always_fails.attempts() == 3);  // callbacks.max_attempts
  CHECK(sim.stats("sc")["callback_attempts"] == 3);

  sim.patch("sc", {{"dropped_callback_rate", 1.0}});
  body["callback_url"] = ok.url("y");
  sim.call_json("POST", "/sc/v1/task/categorization", body, kScale);
  REQUIRE(eventually([&] { return sim.stats("sc")["callbacks_dropped"] == 1; }));
  CHECK(ok.attempts() == 0);
}

TEST_CASE("behaviour: control surface: healthz, stats, patch validation, reset", "[sim][behaviour]") {
  Sim sim;
  CHECK(sim.call("GET", "/healthz").status == 200);
  json stats = json::parse(sim.call("GET", "/_sim/stats").body);
  for (const char* id : {"sc", "sg", "mc"}) {
    INFO(id);
    REQUIRE(stats["vendors"].contains(id));
    for (const char* key : {"tasks_created", "duplicate_creates_refused", "cancels", "callbacks_sent",
                            "callbacks_failed", "charged_micros", "in_flight"})
      CHECK(stats["vendors"][id].contains(key));
  }
  auto bad = sim.call("POST", "/_sim/vendors/sc", R"({"faults":{"rate_429":2}})");
  CHECK(bad.status == 422);
  CHECK(json::parse(bad.body)["errors"][0]["pointer"] == "/faults/rate_429");
  CHECK(sim.call("POST", "/_sim/vendors/sc", R"({"nonsense":1})").status == 422);
  CHECK(sim.call("POST", "/_sim/vendors/sc", "{").status == 400);
  CHECK(sim.call("POST", "/_sim/vendors/nobody", "{}").status == 404);
  json view = json::parse(sim.call("GET", "/_sim/vendors/sc").body);
  CHECK(view["behaviour"]["faults"]["rate_429"] == 0.0);

  sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"i", 1}}), kScale);
  sim.patch("sc", {{"outage", true}});
  CHECK(sim.call("POST", "/_sim/reset").status == 200);
  CHECK(sim.stats("sc")["tasks_created"] == 0);
  CHECK(sim.call("GET", "/sc/v1/tasks", "", kScale).status == 200);  // outage switched off again
}

TEST_CASE("behaviour: with an injected clock: absolute outage windows, drift at a time, Mercor weeks",
          "[sim][behaviour]") {
  ManualClock clock("2026-11-25T12:00:00Z");  // a Wednesday in ISO week 2026-W48
  json scenario = base_scenario();
  scenario["vendors"][0]["accuracy"] = {{"*", 1.0}};
  scenario["vendors"][0]["drift"] = {{{"at", "2026-12-01T00:00:00Z"}, {"accuracy_delta", -1.0}}};
  scenario["vendors"][1]["outages"] = {{{"start", "2026-11-25T11:00:00Z"}, {"end", "2026-11-25T13:00:00Z"}}};
  Sim sim(scenario, clock);

  CHECK(sim.call("GET", "/sg/api/projects", "", basic("surge-key")).status == 503);
  clock.set("2026-11-25T13:00:00Z");
  CHECK(sim.call("GET", "/sg/api/projects", "", basic("surge-key")).status == 200);

  const std::string before =
      sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"i", 1}, {"_truth", "a"}}), kScale)["task_id"];
  CHECK(wait_answer(sim, before) == "a");
  json t = sim.call_json("GET", "/sc/v1/task/" + before, nullptr, kScale);
  CHECK(t["created_at"] == "2026-11-25T13:00:00.000Z");
  clock.set("2026-12-01T00:00:00Z");
  const std::string after =
      sim.call_json("POST", "/sc/v1/task/categorization", cat_task({{"i", 2}, {"_truth", "a"}}), kScale)["task_id"];
  CHECK(wait_answer(sim, after) != "a");

  // Mercor: a 1-hour weekly cap filled on Wednesday noon of 2026-W48 reopens Monday 2026-11-30.
  clock.set("2026-11-25T12:00:00Z");
  const Headers h1 = bearer("mercor-key", "r1"), h2 = bearer("mercor-key", "e1");
  json req = sim.call_json("POST", "/mc/v1/requisitions",
                           {{"title", "t"}, {"domain", "medical"}, {"hourly_rate_max_usd", 200}}, h1, 201);
  json eng = sim.call_json("POST", "/mc/v1/engagements", {{"requisition_id", req["id"]}, {"expert_id", "md"}}, h2, 201);
  const std::string eid = eng["id"];
  json work = {{"items",
                {{{"ref", "a"}, {"task_type", "classification"}, {"labels", {"x", "y"}}, {"data", {{"n", 1}}}},
                 {{"ref", "b"}, {"task_type", "classification"}, {"labels", {"x", "y"}}, {"data", {{"n", 2}}}}}}};
  sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", work, bearer("mercor-key", "w1"), 201);
  REQUIRE(eventually([&] { return sim.stats("mc")["completed"] == 2; }));
  json sheet =
      sim.call_json("GET", "/mc/v1/engagements/" + eid + "/timesheets?week=2026-W48", nullptr, bearer("mercor-key"));
  CHECK(sheet["week"] == "2026-W48");
  CHECK(sheet["entries"].size() == 2);
  CHECK(sheet["status"] == "open");
  auto capped = sim.call("POST", "/mc/v1/engagements/" + eid + "/work-items", work.dump(), bearer("mercor-key", "w2"));
  CHECK(capped.status == 429);
  CHECK(capped.header("Retry-After") == std::optional<std::string>(std::to_string(4 * 86400 + 12 * 3600)));
  clock.set("2026-11-30T00:00:00Z");
  CHECK(sim.call_json("GET", "/mc/v1/engagements/" + eid + "/timesheets?week=2026-W48", nullptr,
                      bearer("mercor-key"))["status"] == "locked");
  sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", work, bearer("mercor-key", "w3"), 201);
}

TEST_CASE("behaviour: shutting down does not wait for a hanging request", "[sim][behaviour]") {
  auto sim = std::make_unique<Sim>();
  sim->patch("sc", {{"hang_rate", 1.0}, {"hang_ms", 120000}});
  const auto port = sim->port();
  std::thread client([port] {
    try {
      labelbroker::testing::http_request(port, "GET", "/sc/v1/tasks", "", kScale);
    } catch (const std::exception&) {
      // The connection may be closed by the shutdown: either way the request is over.
    }
  });
  REQUIRE(eventually([&] { return sim->stats("sc")["hangs"] == 1; }));
  const auto start = std::chrono::steady_clock::now();
  sim.reset();
  client.join();
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(60));  // far below the 120 s hang
}
