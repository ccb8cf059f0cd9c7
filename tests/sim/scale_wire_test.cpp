// Scale-style wire format: paths, verbs, status codes, field names and error bodies as
// VENDOR-APIS.md pins them.
#include "sim_fixture.hpp"

using namespace labelbroker::vendors::sim::testing;

namespace {

json categorization(const std::string& text, const std::string& unique_id = "", const json& metadata = json::object()) {
  json body = {{"attachment", text},
               {"attachment_type", "text"},
               {"categories", {"urgent", "routine", "not_medical"}},
               {"instruction", "How urgent is this note?"},
               {"metadata", metadata}};
  if (!unique_id.empty()) body["unique_id"] = unique_id;
  return body;
}

const Headers kAuth = basic("scale-key");

}  // namespace

TEST_CASE("scale: create, get and complete a categorization task", "[sim][scale]") {
  Sim sim;
  json task = sim.call_json(
      "POST", "/sc/v1/task/categorization",
      categorization("Chest pain", "a-1", {{"domain", "medical"}, {"data", {{"text", "Chest pain"}}}}), kAuth);
  REQUIRE(task["task_id"].is_string());
  CHECK(task["task_id"].get<std::string>().size() == 24);
  CHECK(task["type"] == "categorization");
  CHECK(task["status"] == "pending");
  CHECK(task["unique_id"] == "a-1");
  CHECK(task["params"]["categories"] == json({"urgent", "routine", "not_medical"}));
  CHECK(task["params"]["attachment"] == "Chest pain");
  CHECK(task["metadata"]["domain"] == "medical");
  CHECK(task["instruction"] == "How urgent is this note?");
  CHECK(task["audits"] == json::array());
  for (const char* key : {"created_at", "updated_at", "callback_url", "tags"}) CHECK(task.contains(key));
  CHECK_FALSE(task.contains("completed_at"));
  CHECK_FALSE(task.contains("response"));

  const std::string id = task["task_id"];
  json done;
  REQUIRE(eventually([&] {
    done = json::parse(sim.call("GET", "/sc/v1/task/" + id, "", kAuth).body);
    return done["status"] == "completed";
  }));
  REQUIRE(done["response"]["category"].is_string());
  CHECK(done.contains("completed_at"));
  CHECK(sim.stats("sc")["charged_micros"] == 40000);
}

TEST_CASE("scale: wrong or missing key is 401 in Scale's error format", "[sim][scale]") {
  Sim sim;
  for (const Headers& h : {Headers{}, basic("wrong"), Headers{{"Authorization", "Bearer scale-key"}}}) {
    auto r = sim.call("POST", "/sc/v1/task/categorization", categorization("x").dump(), h);
    CHECK(r.status == 401);
    json body = json::parse(r.body);
    CHECK(body["status_code"] == 401);
    CHECK(body["error"].is_string());
  }
  CHECK(sim.stats("sc")["tasks_created"] == 0);
  CHECK(sim.stats("sc")["auth_failures"] == 3);
}

TEST_CASE("scale: a reused unique_id is 409 with the exact message - lookup by unique_id finds the task",
          "[sim][scale]") {
  Sim sim;
  json first = sim.call_json("POST", "/sc/v1/task/categorization", categorization("a", "dup-1"), kAuth);
  auto again = sim.call("POST", "/sc/v1/task/categorization", categorization("a", "dup-1").dump(), kAuth);
  CHECK(again.status == 409);
  CHECK(json::parse(again.body) ==
        json({{"status_code", 409},
              {"error", "The provided idempotency key or unique_id is already in use for a different request"}}));
  json found = sim.call_json("GET", "/sc/v1/tasks?unique_id=dup-1", nullptr, kAuth);
  REQUIRE(found["docs"].size() == 1);
  CHECK(found["docs"][0]["task_id"] == first["task_id"]);
  CHECK(found["total"] == 1);
  CHECK(sim.stats("sc")["duplicate_creates_refused"] == 1);
  CHECK(sim.stats("sc")["tasks_created"] == 1);
}

TEST_CASE("scale: GET /v1/tasks pages with next_token across more than one page", "[sim][scale]") {
  Sim sim;
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    json body = categorization("item " + std::to_string(i), "p-" + std::to_string(i));
    body["project"] = "proj";
    ids.push_back(sim.call_json("POST", "/sc/v1/task/categorization", body, kAuth)["task_id"]);
  }
  sim.call_json("POST", "/sc/v1/task/categorization", categorization("other project"), kAuth);

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  while (true) {
    json page = sim.call_json(
        "GET", "/sc/v1/tasks?project=proj&limit=3" + (token.empty() ? "" : "&next_token=" + token), nullptr, kAuth);
    ++pages;
    CHECK(page["total"] == 7);
    CHECK(page["limit"] == 3);
    CHECK(page["offset"] == seen.size());
    for (const auto& d : page["docs"]) seen.push_back(d["task_id"]);
    if (!page["has_more"].get<bool>()) {
      CHECK(page["next_token"].is_null());
      break;
    }
    token = page["next_token"];
  }
  CHECK(pages == 3);
  CHECK(seen == ids);

  for (const char* bad :
       {"limit=0", "limit=101", "limit=x", "status=done", "updated_after=yesterday", "next_token=zz"}) {
    auto r = sim.call("GET", std::string("/sc/v1/tasks?") + bad, "", kAuth);
    INFO(bad);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["status_code"] == 400);
  }
}

TEST_CASE("scale: cancel only while not started, else 409 - unknown ids 404", "[sim][scale]") {
  Sim sim;
  sim.patch("sc", {{"paused", true}});
  json task = sim.call_json("POST", "/sc/v1/task/categorization", categorization("a"), kAuth);
  const std::string id = task["task_id"];
  json canceled = sim.call_json("POST", "/sc/v1/task/" + id + "/cancel", nullptr, kAuth);
  CHECK(canceled["status"] == "canceled");
  CHECK(sim.call("POST", "/sc/v1/task/" + id + "/cancel", "", kAuth).status == 200);

  sim.patch("sc", {{"paused", false}});
  json started = sim.call_json("POST", "/sc/v1/task/categorization", categorization("b"), kAuth);
  const std::string id2 = started["task_id"];
  REQUIRE(eventually(
      [&] { return json::parse(sim.call("GET", "/sc/v1/task/" + id2, "", kAuth).body)["status"] == "completed"; }));
  auto refused = sim.call("POST", "/sc/v1/task/" + id2 + "/cancel", "", kAuth);
  CHECK(refused.status == 409);
  CHECK(json::parse(refused.body)["status_code"] == 409);

  auto missing = sim.call("GET", "/sc/v1/task/000000000000000000000000", "", kAuth);
  CHECK(missing.status == 404);
  CHECK(json::parse(missing.body)["status_code"] == 404);
  CHECK(sim.call("POST", "/sc/v1/task/nope/cancel", "", kAuth).status == 404);
  CHECK(sim.stats("sc")["cancels"] == 1);
  CHECK(sim.stats("sc")["charged_micros"] == 40000);  // only the completed task is charged
}

TEST_CASE("scale: comparison and textcollection responses", "[sim][scale]") {
  Sim sim;
  json cmp = sim.call_json("POST", "/sc/v1/task/comparison",
                           {{"attachments", {"answer one", "answer two"}},
                            {"choices", {"A", "B"}},
                            {"metadata", {{"data", {{"a", "answer one"}, {"b", "answer two"}, {"_truth", "B"}}}}}},
                           kAuth);
  json txt = sim.call_json("POST", "/sc/v1/task/textcollection",
                           {{"attachment", "rate this"},
                            {"fields", {{{"type", "category"}, {"field_id", "score"}, {"choices", {"1", "2", "3"}}}}}},
                           kAuth);
  json a, b;
  REQUIRE(eventually([&] {
    a = json::parse(sim.call("GET", "/sc/v1/task/" + cmp["task_id"].get<std::string>(), "", kAuth).body);
    b = json::parse(sim.call("GET", "/sc/v1/task/" + txt["task_id"].get<std::string>(), "", kAuth).body);
    return a["status"] == "completed" && b["status"] == "completed";
  }));
  CHECK((a["response"]["choice"] == "A" || a["response"]["choice"] == "B"));
  REQUIRE(b["response"]["fields"]["score"].is_string());
  CHECK(sim.stats("sc")["charged_micros"] == 60000 + 80000);
}

TEST_CASE("scale: bad requests are 400 in Scale's format, never a crash", "[sim][scale]") {
  Sim sim;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/sc/v1/task/categorization", "{not json"},
      {"/sc/v1/task/categorization", "[1,2]"},
      {"/sc/v1/task/categorization", R"({"attachment":"x"})"},
      {"/sc/v1/task/categorization", R"({"attachment":"x","categories":"a"})"},
      {"/sc/v1/task/categorization", R"({"attachment":"x","categories":["a","a"]})"},
      {"/sc/v1/task/categorization", R"({"attachment":"x","categories":["a","b"],"metadata":[]})"},
      {"/sc/v1/task/categorization", R"({"attachment":"x","categories":["a","b"],"unique_id":7})"},
      {"/sc/v1/task/categorization", R"({"attachment":"x","categories":["a","b"],"batch":"nope"})"},
      {"/sc/v1/task/categorization", R"({"attachment":"x","categories":["a","b"],"callback_url":"ftp://x"})"},
      {"/sc/v1/task/textcollection", R"({"fields":[]})"},
      {"/sc/v1/task/polygon", R"({})"},
  };
  for (const auto& [target, body] : cases) {
    auto r = sim.call("POST", target, body, kAuth);
    INFO(target << " " << body << " -> " << r.body);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["status_code"] == 400);
  }
  CHECK(sim.stats("sc")["tasks_created"] == 0);
}

TEST_CASE("scale: batches and projects", "[sim][scale]") {
  Sim sim;
  json batch = sim.call_json("POST", "/sc/v1/batches", {{"project", "p"}, {"name", "b1"}, {"callback", ""}}, kAuth);
  CHECK(batch["status"] == "staging");
  CHECK(sim.call("POST", "/sc/v1/batches", json{{"project", "p"}, {"name", "b1"}}.dump(), kAuth).status == 409);
  json body = categorization("x");
  body["batch"] = "b1";
  sim.call_json("POST", "/sc/v1/task/categorization", body, kAuth);
  CHECK(sim.call_json("GET", "/sc/v1/batches/b1/status", nullptr, kAuth)["status"] == "staging");
  sim.call_json("POST", "/sc/v1/batches/b1/finalize", nullptr, kAuth);
  REQUIRE(eventually(
      [&] { return sim.call_json("GET", "/sc/v1/batches/b1/status", nullptr, kAuth)["status"] == "completed"; }));
  json status = sim.call_json("GET", "/sc/v1/batches/b1/status", nullptr, kAuth);
  CHECK(status["completed"] == 1);
  CHECK(status["pending"] == 0);
  CHECK(sim.call("GET", "/sc/v1/batches/none/status", "", kAuth).status == 404);

  sim.call_json("POST", "/sc/v1/projects", {{"type", "categorization"}, {"name", "p1"}, {"params", json::object()}},
                kAuth);
  CHECK(sim.call("POST", "/sc/v1/projects", json{{"type", "categorization"}, {"name", "p1"}}.dump(), kAuth).status ==
        409);
  json projects = sim.call_json("GET", "/sc/v1/projects", nullptr, kAuth);
  REQUIRE(projects.is_array());
  CHECK(projects.size() == 1);
  CHECK(projects[0]["name"] == "p1");
}

TEST_CASE("scale: callback carries task, response, task_id and scale-callback-auth - retried on 5xx", "[sim][scale]") {
  Receiver receiver(/*fail_first=*/1);
  Sim sim;
  json body = categorization("x", "cb-1");
  body["callback_url"] = receiver.url("scale");
  json task = sim.call_json("POST", "/sc/v1/task/categorization", body, kAuth);
  REQUIRE(receiver.wait_for(1));
  auto got = receiver.got()[0];
  CHECK(got.headers.get("scale-callback-auth") == std::optional<std::string_view>("scale-secret"));
  json payload = json::parse(got.body);
  CHECK(payload["task_id"] == task["task_id"]);
  CHECK(payload["task"]["task_id"] == task["task_id"]);
  CHECK(payload["task"]["status"] == "completed");
  CHECK(payload["response"] == payload["task"]["response"]);
  CHECK(receiver.attempts() == 2);
  REQUIRE(eventually([&] { return sim.stats("sc")["callbacks_sent"] == 1; }));
  CHECK(sim.call_json("GET", "/sc/v1/task/" + task["task_id"].get<std::string>(), nullptr,
                      kAuth)["callback_succeeded"] == true);
}
