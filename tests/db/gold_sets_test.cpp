// Reusable gold sets through real HTTP against a real PostgreSQL: creating, listing and reading
// sets (never their items or answers), validation problems, roles and tenant isolation, and jobs
// that reference a set getting its items as gold at intake. Dispatch is not running here.
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "auth/api_key.hpp"
#include "config/config.hpp"
#include "db/migrations.hpp"
#include "db/probe.hpp"
#include "db/team_store.hpp"
#include "support/api_fixture.hpp"
#include "support/api_keys.hpp"
#include "support/http_client.hpp"
#include "support/scratch_db.hpp"
#include "support/test_server.hpp"
#include "vendors/common/http_client.hpp"
#include "vendors/registry.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using nlohmann::json;

namespace {

// One vendor for every task type, pointing nowhere: intake never calls vendors.
constexpr const char* kVendors = R"({"vendors": [
  {"id": "scale", "kind": "scale", "base_url": "http://127.0.0.1:9/scale/v1",
   "api_key": "k1", "callback_secret": "callback-secret-scale-0123",
   "capabilities": {"task_types": ["classification", "preference", "rating"],
                    "domains": ["general"], "expertise": ["general"]},
   "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"}}
]})";

// Item data holds a marker that must never come back in an API response.
constexpr const char* kSecret = "only-the-broker-sees-this";

json gold_set_body(const std::string& name, int items, const std::string& answer = "urgent") {
  json body = {{"name", name}, {"task_type", "classification"}, {"labels", {"urgent", "routine"}}};
  body["items"] = json::array();
  for (int i = 0; i < items; ++i)
    body["items"].push_back({{"id", "g-" + std::to_string(i)},
                             {"data", {{"text", std::string(kSecret) + " " + std::to_string(i)}}},
                             {"answer", i % 2 ? "routine" : answer}});
  return body;
}

json job_body(int items, int gold = 0) {
  json body = {{"name", "triage"},
               {"task_type", "classification"},
               {"domain", "general"},
               {"labels", {"urgent", "routine", "unsure"}},
               {"redundancy", 1},
               {"budget_usd", "10.00"},
               {"deadline", "2099-01-01T00:00:00Z"}};
  body["items"] = json::array();
  for (int i = 0; i < items; ++i)
    body["items"].push_back({{"id", "i-" + std::to_string(i)}, {"data", {{"text", "note"}}}});
  if (gold > 0) {
    body["gold"] = json::array();
    for (int i = 0; i < gold; ++i)
      body["gold"].push_back(
          {{"id", "g-" + std::to_string(i)}, {"data", {{"text", "own gold"}}}, {"answer", "unsure"}});
  }
  return body;
}

// The messages of the errors at `pointer`, in order.
std::vector<std::string> messages_at(const HttpResult& r, const std::string& pointer) {
  std::vector<std::string> out;
  auto body = json::parse(r.body, nullptr, false);
  if (!body.is_object() || !body.contains("errors")) return out;
  for (const auto& e : body["errors"])
    if (e["pointer"] == pointer) out.push_back(e["message"].get<std::string>());
  return out;
}

bool has_pointer(const HttpResult& r, const std::string& pointer) {
  return !messages_at(r, pointer).empty();
}

// The API with one vendor for every task type.
class GoldApi : public ApiFixture {
 public:
  explicit GoldApi(config::JobsConfig jobs = {}) : ApiFixture(kVendors, jobs) {}

  using ApiFixture::post;
  HttpResult post(const std::string& path, const json& body, const std::string& key) {
    return ApiFixture::post(path, body.dump(), key);
  }
  // Creates a gold set as team-a's submitter; returns its id.
  std::string create_set(const json& body) {
    auto r = post("/v1/gold-sets", body, submitter);
    INFO(r.body);
    REQUIRE(r.status == 201);
    return json::parse(r.body)["id"].get<std::string>();
  }
};

}  // namespace

TEST_CASE("gold sets: a set is stored, then listed and read back without its items or answers", "[.db][gold-sets]") {
  GoldApi api;
  auto created = api.post("/v1/gold-sets", gold_set_body("triage-gold", 5), api.submitter);
  INFO(created.body);
  REQUIRE(created.status == 201);
  auto set = json::parse(created.body);
  const std::string id = set["id"];
  CHECK(created.header("Location") == "/v1/gold-sets/" + id);
  CHECK(set["name"] == "triage-gold");
  CHECK(set["task_type"] == "classification");
  CHECK(set["labels"] == json{"urgent", "routine"});
  CHECK(set["item_count"] == 5);
  CHECK(set["created_at"].is_string());
  CHECK(!set.contains("items"));

  // Stored whole: every item with its data and answer.
  CHECK(api.count("SELECT count(*) FROM gold_set_items WHERE gold_set_id = '" + id + "'") == 5);
  CHECK(api.count("SELECT count(*) FROM gold_set_items WHERE gold_set_id = '" + id +
                  "' AND item_id = 'g-1' AND answer = 'routine' AND data->>'text' = '" + kSecret + " 1'") == 1);
  CHECK(api.text("SELECT team_id::text FROM gold_sets WHERE id = '" + id + "'") ==
        api.text("SELECT id::text FROM teams WHERE name = 'team-a'"));

  const std::string newer = api.create_set(gold_set_body("rating-gold", 1));
  auto listed = api.get("/v1/gold-sets", api.viewer);
  INFO(listed.body);
  REQUIRE(listed.status == 200);
  auto sets = json::parse(listed.body)["gold_sets"];
  REQUIRE(sets.size() == 2);
  CHECK(sets[0]["id"] == newer);  // newest first
  CHECK(sets[1] == set);

  auto one = api.get("/v1/gold-sets/" + id, api.viewer);
  REQUIRE(one.status == 200);
  CHECK(json::parse(one.body) == set);

  // Gold must not leak: no response carries an item, its data or its id.
  for (const auto* r : {&created, &listed, &one}) {
    CHECK(r->body.find(kSecret) == std::string::npos);
    CHECK(r->body.find("g-1") == std::string::npos);
    CHECK(r->body.find("answer") == std::string::npos);
  }

  // A name is unique per team: 409 and nothing stored; another team may use it.
  auto again = api.post("/v1/gold-sets", gold_set_body("triage-gold", 2), api.submitter);
  CHECK(again.status == 409);
  CHECK(problem_type(again) == "/problems/gold-set-exists");
  CHECK(again.header("Content-Type") == "application/problem+json");
  CHECK(api.count("SELECT count(*) FROM gold_sets") == 2);
  CHECK(api.count("SELECT count(*) FROM gold_set_items") == 6);
  CHECK(api.post("/v1/gold-sets", gold_set_body("triage-gold", 2), api.other_team).status == 201);

  // Racing creates of one name: exactly one set, whole.
  std::vector<std::future<HttpResult>> racing;
  for (int i = 0; i < 4; ++i)
    racing.push_back(std::async(std::launch::async,
                                [&] { return api.post("/v1/gold-sets", gold_set_body("raced", 500), api.submitter); }));
  int created_count = 0, conflicts = 0;
  for (auto& f : racing) {
    auto r = f.get();
    created_count += r.status == 201;
    conflicts += r.status == 409;
  }
  CHECK(created_count == 1);
  CHECK(conflicts == 3);
  CHECK(api.count("SELECT count(*) FROM gold_set_items s JOIN gold_sets g ON g.id = s.gold_set_id "
                  "WHERE g.name = 'raced'") == 500);
}

TEST_CASE("gold sets: a bad set gets a 422 with a pointer to every problem, and nothing is stored",
          "[.db][gold-sets]") {
  GoldApi api;
  struct Case {
    std::string name;
    json body;
    std::string pointer;
  };
  auto with = [](const std::function<void(json&)>& change) {
    json j = gold_set_body("bad", 4);
    change(j);
    return j;
  };
  const std::vector<Case> cases = {
      {"answer not among the labels", with([](json& j) { j["items"][2]["answer"] = "maybe"; }), "/items/2/answer"},
      {"answer missing", with([](json& j) { j["items"][1].erase("answer"); }), "/items/1/answer"},
      {"duplicate item ids", with([](json& j) { j["items"][3]["id"] = "g-0"; }), "/items/3/id"},
      {"empty items", with([](json& j) { j["items"] = json::array(); }), "/items"},
      {"no items", with([](json& j) { j.erase("items"); }), "/items"},
      {"data not an object", with([](json& j) { j["items"][0]["data"] = "text"; }), "/items/0/data"},
      {"unknown task type", with([](json& j) { j["task_type"] = "transcription"; }), "/task_type"},
      {"one label", with([](json& j) { j["labels"] = {"urgent"}; }), "/labels"},
      {"duplicate labels", with([](json& j) {
         j["labels"] = {"urgent", "urgent"};
       }),
       "/labels/1"},
      {"preference with three labels", with([](json& j) {
         j["task_type"] = "preference";
         j["labels"] = {"urgent", "routine", "unsure"};
       }),
       "/labels"},
      {"no name", with([](json& j) { j.erase("name"); }), "/name"},
      {"an unknown field", with([](json& j) { j["items"][0]["weight"] = 2; }), "/items/0/weight"},
      {"an array", json::array({1, 2}), ""},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto r = api.post("/v1/gold-sets", c.body, api.submitter);
    INFO(r.body);
    CHECK(r.status == 422);
    CHECK(problem_type(r) == "/problems/invalid-gold-set");
    CHECK(has_pointer(r, c.pointer));
  }

  // Every problem at once.
  auto many = api.post("/v1/gold-sets", with([](json& j) {
                         j["task_type"] = "transcription";
                         j["items"][1]["id"] = "g-0";
                         j["items"][2]["answer"] = "maybe";
                       }),
                       api.submitter);
  CHECK(many.status == 422);
  CHECK(has_pointer(many, "/task_type"));
  CHECK(has_pointer(many, "/items/1/id"));
  CHECK(has_pointer(many, "/items/2/answer"));

  // At most jobs::kMaxGoldSetItems (100,000) items.
  auto too_many = api.post("/v1/gold-sets", gold_set_body("huge", 100001), api.submitter);
  CHECK(too_many.status == 422);
  CHECK(messages_at(too_many, "/items") == std::vector<std::string>{"a gold set may have at most 100000 items"});

  // Not JSON, or JSON the broker cannot store: 400, as for jobs.
  auto broken = api.post("/v1/gold-sets", std::string("{\"name\": "), api.submitter);
  CHECK(broken.status == 400);
  CHECK(problem_type(broken) == "/problems/invalid-json");
  auto nul = api.post("/v1/gold-sets", with([](json& j) { j["items"][0]["data"]["text"] = std::string("a\0b", 3); }),
                      api.submitter);
  CHECK(nul.status == 400);

  CHECK(api.count("SELECT count(*) FROM gold_sets") == 0);
  CHECK(api.count("SELECT count(*) FROM gold_set_items") == 0);
}

TEST_CASE("gold sets: viewers read but cannot create, another team's set does not exist for it", "[.db][gold-sets]") {
  GoldApi api;
  const std::string id = api.create_set(gold_set_body("mine", 3));

  auto forbidden = api.post("/v1/gold-sets", gold_set_body("viewer's", 3), api.viewer);
  CHECK(forbidden.status == 403);
  CHECK(problem_type(forbidden) == "/problems/forbidden");
  CHECK(api.count("SELECT count(*) FROM gold_sets") == 1);
  CHECK(api.get("/v1/gold-sets/" + id, api.viewer).status == 200);
  CHECK(api.get("/v1/gold-sets", "").status == 401);

  // Team B: the set is 404 exactly like an id nobody has, and absent from its list.
  auto theirs = api.get("/v1/gold-sets/" + id, api.other_team);
  CHECK(theirs.status == 404);
  CHECK(problem_type(theirs) == "/problems/not-found");
  CHECK(api.get("/v1/gold-sets/00000000-0000-0000-0000-000000000000", api.other_team).status == 404);
  CHECK(api.get("/v1/gold-sets/not-a-uuid", api.submitter).status == 404);
  auto listed = api.get("/v1/gold-sets", api.other_team);
  REQUIRE(listed.status == 200);
  CHECK(json::parse(listed.body)["gold_sets"] == json::array());
}

TEST_CASE("gold sets: a job that references a set gets the set's items as gold at intake", "[.db][gold-sets]") {
  GoldApi api;
  const std::string set_id = api.create_set(gold_set_body("triage-gold", 4));

  json body = job_body(10, 2);
  body["gold_set"] = set_id;
  auto created = api.post("/v1/jobs", body, api.submitter);
  INFO(created.body);
  REQUIRE(created.status == 201);
  auto job = json::parse(created.body);
  const std::string id = job["id"];
  const std::string q = "'" + id + "'";
  CHECK(job["counts"]["items"] == 10);
  CHECK(job["counts"]["gold"] == 6);   // 2 of its own and the set's 4
  CHECK(job["counts"]["open"] == 10);  // gold is never counted among the items to label

  CHECK(api.count("SELECT count(*) FROM job_items WHERE job_id = " + q + " AND gold_answer IS NOT NULL") == 6);
  CHECK(api.count("SELECT count(*) FROM job_items WHERE job_id = " + q + " AND gold_answer IS NULL") == 10);
  // The set's items under "set:<id>", with the set's answers and data; the job's own gold as sent.
  CHECK(api.count("SELECT count(*) FROM job_items i JOIN gold_set_items s ON i.item_id = 'set:' || s.item_id "
                  "WHERE i.job_id = " +
                  q + " AND s.gold_set_id = '" + set_id + "' AND i.gold_answer = s.answer AND i.data = s.data") == 4);
  CHECK(api.text("SELECT string_agg(item_id, ',' ORDER BY item_id) FROM job_items WHERE job_id = " + q +
                 " AND gold_answer IS NOT NULL") == "g-0,g-1,set:g-0,set:g-1,set:g-2,set:g-3");
  CHECK(api.text("SELECT gold_answer FROM job_items WHERE job_id = " + q + " AND item_id = 'set:g-1'") == "routine");
  CHECK(api.text("SELECT gold_set_id::text FROM jobs WHERE id = " + q) == set_id);
  CHECK(api.count("SELECT gold_count FROM jobs WHERE id = " + q) == 6);

  auto fetched = api.get("/v1/jobs/" + id, api.viewer);
  REQUIRE(fetched.status == 200);
  CHECK(json::parse(fetched.body)["counts"] ==
        json{{"items", 10}, {"gold", 6}, {"open", 10}, {"labeled", 0}, {"unlabeled", 0}});
  CHECK(fetched.body.find(kSecret) == std::string::npos);

  // A draft may reference a set too: its gold is there from the start, items come later.
  json draft = job_body(0);
  draft["gold_set"] = set_id;
  auto drafted = api.post("/v1/jobs?draft=true", draft, api.submitter);
  INFO(drafted.body);
  REQUIRE(drafted.status == 201);
  const std::string draft_id = json::parse(drafted.body)["id"];
  CHECK(json::parse(drafted.body)["counts"]["gold"] == 4);
  // Appending an id the set's items took is a duplicate like any other.
  auto clash = api.post("/v1/jobs/" + draft_id + "/items",
                        json{{"items", {{{"id", "set:g-0"}, {"data", json::object()}}}}}, api.submitter);
  CHECK(clash.status == 409);
  CHECK(has_pointer(clash, "/items/0/id"));
  auto appended = api.post("/v1/jobs/" + draft_id + "/items", json{{"items", job_body(3)["items"]}}, api.submitter);
  CHECK(appended.status == 200);
  CHECK(json::parse(appended.body)["counts"] == json{{"items", 3}, {"gold", 4}});
  auto started = api.post("/v1/jobs/" + draft_id + "/start", std::string(), api.submitter);
  REQUIRE(started.status == 200);
  CHECK(json::parse(started.body)["counts"]["gold"] == 4);
  CHECK(api.count("SELECT count(*) FROM job_items WHERE job_id = '" + draft_id + "' AND item_id LIKE 'set:%'") == 4);

  // The set itself is unchanged by use.
  CHECK(api.count("SELECT count(*) FROM gold_set_items") == 4);
}

TEST_CASE("gold sets: a job's set must be the team's own, of its task type, with labels the job has",
          "[.db][gold-sets]") {
  config::JobsConfig limits;
  limits.max_items_per_job = 12;
  GoldApi api(limits);
  const std::string mine = api.create_set(gold_set_body("triage-gold", 4));
  json rating = gold_set_body("rating-gold", 2);
  rating["task_type"] = "rating";
  const std::string rating_id = api.create_set(rating);
  json wider = gold_set_body("wider-gold", 2);
  wider["labels"] = {"urgent", "routine", "ignore"};
  wider["items"][0]["answer"] = "ignore";
  const std::string wider_id = api.create_set(wider);
  auto theirs = api.post("/v1/gold-sets", gold_set_body("their-gold", 2), api.other_team);
  REQUIRE(theirs.status == 201);
  const std::string theirs_id = json::parse(theirs.body)["id"];

  auto submit = [&](const std::function<void(json&)>& change) {
    json body = job_body(3);
    change(body);
    auto r = api.post("/v1/jobs", body, api.submitter);
    INFO(r.body);
    CHECK(r.status == 422);
    CHECK(problem_type(r) == "/problems/invalid-job");
    return r;
  };

  // Another team's set and a set nobody has get the same answer: nothing is revealed.
  auto other = submit([&](json& j) { j["gold_set"] = theirs_id; });
  auto unknown = submit([&](json& j) { j["gold_set"] = "6f1c0f7e-8d43-4c55-9a4a-0d7a3c2b1e90"; });
  CHECK(messages_at(other, "/gold_set") == std::vector<std::string>{"no gold set with this id exists"});
  CHECK(messages_at(unknown, "/gold_set") == messages_at(other, "/gold_set"));
  CHECK(has_pointer(submit([&](json& j) { j["gold_set"] = "not-a-uuid"; }), "/gold_set"));
  CHECK(has_pointer(submit([&](json& j) { j["gold_set"] = 7; }), "/gold_set"));

  auto task_type = submit([&](json& j) { j["gold_set"] = rating_id; });
  CHECK(messages_at(task_type, "/gold_set") ==
        std::vector<std::string>{"the gold set is for rating tasks, the job is classification"});
  auto labels = submit([&](json& j) { j["gold_set"] = wider_id; });
  CHECK(messages_at(labels, "/gold_set") ==
        std::vector<std::string>{"the gold set's label 'ignore' is not one of the job's labels"});
  // The job's own ids may not take the form the set's items get.
  auto reserved = submit([&](json& j) {
    j["gold_set"] = mine;
    j["items"][1]["id"] = "set:g-0";
  });
  CHECK(has_pointer(reserved, "/items/1/id"));
  // The set's items count towards the job's size: 3 + 4 + 6 > 12.
  auto too_big = submit([&](json& j) {
    j["gold_set"] = mine;
    j["gold"] = job_body(0, 6)["gold"];
  });
  CHECK(has_pointer(too_big, "/items"));
  // The set's problems are reported with the job's others.
  auto many = submit([&](json& j) {
    j["gold_set"] = rating_id;
    j["deadline"] = "2020-01-01T00:00:00Z";
  });
  CHECK(has_pointer(many, "/gold_set"));
  CHECK(has_pointer(many, "/deadline"));

  CHECK(api.count("SELECT count(*) FROM jobs") == 0);
  CHECK(api.count("SELECT count(*) FROM job_items") == 0);

  // Without the reserved id, and within the size, the same job is fine; "set:" is only reserved
  // in jobs that reference a set.
  json ok = job_body(3);
  ok["gold_set"] = mine;
  CHECK(api.post("/v1/jobs", ok, api.submitter).status == 201);
  json plain = job_body(3);
  plain["items"][1]["id"] = "set:g-0";
  CHECK(api.post("/v1/jobs", plain, api.submitter).status == 201);
}
