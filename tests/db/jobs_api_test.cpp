// The job API (intake and read side) through real HTTP against a real PostgreSQL: creation with
// COPY, idempotency, validation problems, drafts, tenant isolation, listing and results.
// Dispatch is not running here: jobs stay queued, and results are written the way dispatch
// writes them (SQL) to test how they are read.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <functional>
#include <future>
#include <set>
#include <thread>

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

using Headers = ApiFixture::Headers;

// Four vendors as config/local.json has them, pointing nowhere: intake never calls vendors.
constexpr const char* kVendors = R"({"vendors": [
  {"id": "scale", "kind": "scale", "base_url": "http://127.0.0.1:9/scale/v1",
   "api_key": "k1", "callback_secret": "callback-secret-scale-0123",
   "capabilities": {"task_types": ["classification", "preference", "rating"],
                    "domains": ["general", "medical"], "expertise": ["general"]},
   "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"}},
  {"id": "scale-small", "kind": "scale", "base_url": "http://127.0.0.1:9/scale-small/v1",
   "api_key": "k2", "callback_secret": "callback-secret-small-0123",
   "capabilities": {"task_types": ["classification", "preference", "rating"],
                    "domains": ["general", "medical"], "expertise": ["general"]},
   "prices": {"classification": "0.05", "preference": "0.07", "rating": "0.09"}},
  {"id": "surge", "kind": "surge", "base_url": "http://127.0.0.1:9/surge/api",
   "api_key": "k3", "callback_secret": "callback-secret-surge-0123",
   "capabilities": {"task_types": ["classification", "rating"], "domains": ["general", "medical"],
                    "expertise": ["general", "skilled"]},
   "payment_per_response": "0.15"},
  {"id": "mercor", "kind": "mercor", "base_url": "http://127.0.0.1:9/mercor/v1",
   "api_key": "k4", "callback_secret": "callback-secret-mercor-0123",
   "capabilities": {"task_types": ["classification"], "domains": ["medical"], "expertise": ["expert"]},
   "hourly_rate_max": "200.00", "weekly_cap_hours": 40, "headcount": 2, "expected_minutes_per_item": 10}
]})";

json job_body(int items, int gold = 0, const std::string& prefix = "i-") {
  json body = {{"name", "triage"},
               {"task_type", "classification"},
               {"domain", "general"},
               {"labels", {"yes", "no"}},
               {"redundancy", 2},
               {"budget_usd", "100.00"},
               {"deadline", "2099-01-01T00:00:00Z"},
               {"callback_url", "https://ml.example/hook"}};
  body["items"] = json::array();
  for (int i = 0; i < items; ++i)
    body["items"].push_back({{"id", prefix + std::to_string(i)}, {"data", {{"text", "note " + std::to_string(i)}}}});
  if (gold > 0) {
    body["gold"] = json::array();
    for (int i = 0; i < gold; ++i)
      body["gold"].push_back({{"id", "g-" + std::to_string(i)}, {"data", {{"text", "gold"}}}, {"answer", "yes"}});
  }
  return body;
}

bool has_pointer(const HttpResult& r, const std::string& pointer) {
  auto body = json::parse(r.body, nullptr, false);
  if (!body.is_object() || !body.contains("errors")) return false;
  for (const auto& e : body["errors"])
    if (e["pointer"] == pointer) return true;
  return false;
}

// The API with the four vendors above.
class JobsApi : public ApiFixture {
 public:
  explicit JobsApi(config::JobsConfig jobs = {}, http::ServerOptions options = test_server_options())
      : ApiFixture(kVendors, jobs, std::move(options)) {}

  std::string create(const json& body) {
    auto r = post("/v1/jobs", body.dump(), submitter);
    INFO(r.body);
    REQUIRE(r.status == 201);
    return json::parse(r.body)["id"].get<std::string>();
  }
};

}  // namespace

TEST_CASE("jobs api: a job is stored with its items, an Idempotency-Key replays it", "[.db][jobs-api]") {
  JobsApi api;
  const json body = job_body(300, 5);
  const Headers key = {{"Idempotency-Key", "submit-1"}};
  auto created = api.post("/v1/jobs", body.dump(), api.submitter, key);
  INFO(created.body);
  REQUIRE(created.status == 201);
  auto job = json::parse(created.body);
  const std::string id = job["id"];
  CHECK(created.header("Location") == "/v1/jobs/" + id);
  CHECK(job["status"] == "queued");
  CHECK(job["counts"] == json{{"items", 300}, {"gold", 5}, {"open", 300}, {"labeled", 0}, {"unlabeled", 0}});
  CHECK(job["budget_usd"] == "100.00");
  CHECK(job["deadline"] == "2099-01-01T00:00:00Z");
  CHECK(job["eligible_vendors"] == json{"scale", "scale-small", "surge"});
  CHECK(job["labels"] == json{"yes", "no"});
  CHECK(job["callback_url"] == "https://ml.example/hook");
  CHECK(job["per_vendor"] == json::array());

  CHECK(api.count("SELECT count(*) FROM job_items WHERE job_id = '" + id + "' AND gold_answer IS NULL") == 300);
  CHECK(api.count("SELECT count(*) FROM job_items WHERE job_id = '" + id + "' AND gold_answer = 'yes'") == 5);
  CHECK(api.count("SELECT count(*) FROM job_items WHERE job_id = '" + id +
                  "' AND item_id = 'i-7' AND data = '{\"text\": \"note 7\"}'::jsonb") == 1);
  CHECK(api.count("SELECT item_count * 1000 + gold_count FROM jobs WHERE id = '" + id + "'") == 300005);

  // Same key, same body: the same job, 200, nothing new stored.
  auto again = api.post("/v1/jobs", body.dump(), api.submitter, key);
  CHECK(again.status == 200);
  CHECK(json::parse(again.body)["id"] == id);
  CHECK(api.count("SELECT count(*) FROM jobs") == 1);
  CHECK(api.count("SELECT count(*) FROM job_items") == 305);

  // Same key, another body: 422, still one job.
  json changed = body;
  changed["name"] = "another";
  auto reused = api.post("/v1/jobs", changed.dump(), api.submitter, key);
  CHECK(reused.status == 422);
  CHECK(problem_type(reused) == "/problems/idempotency-key-reused");
  CHECK(api.count("SELECT count(*) FROM jobs") == 1);

  // The key is per team: team B may use the same one for its own job.
  auto other = api.post("/v1/jobs", body.dump(), api.other_team, key);
  CHECK(other.status == 201);
  CHECK(json::parse(other.body)["id"] != id);

  // Without a key, every request is a new job.
  CHECK(api.post("/v1/jobs", body.dump(), api.submitter).status == 201);
  CHECK(api.count("SELECT count(*) FROM jobs") == 3);

  auto fetched = api.get("/v1/jobs/" + id, api.viewer);
  REQUIRE(fetched.status == 200);
  CHECK(json::parse(fetched.body)["counts"]["items"] == 300);
}

TEST_CASE("jobs api: concurrent requests with one Idempotency-Key create one job", "[.db][jobs-api]") {
  JobsApi api;
  const std::string body = job_body(2000).dump();
  std::vector<std::future<HttpResult>> requests;
  for (int i = 0; i < 4; ++i) {
    requests.push_back(std::async(std::launch::async, [&] {
      return api.post("/v1/jobs", body, api.submitter, {{"Idempotency-Key", "race"}});
    }));
  }
  std::set<std::string> ids;
  int created = 0;
  for (auto& f : requests) {
    auto r = f.get();
    INFO(r.body);
    REQUIRE((r.status == 201 || r.status == 200));
    created += r.status == 201;
    ids.insert(json::parse(r.body)["id"].get<std::string>());
  }
  CHECK(created == 1);
  CHECK(ids.size() == 1);
  CHECK(api.count("SELECT count(*) FROM jobs") == 1);
  CHECK(api.count("SELECT count(*) FROM job_items") == 2000);
}

TEST_CASE("jobs api: bad input gets a 4xx problem and the server keeps serving", "[.db][jobs-api]") {
  config::JobsConfig limits;
  limits.body_limit_bytes = 256 * 1024;  // above the server's limit below: the route's own limit applies
  auto options = test_server_options();
  options.body_limit_bytes = 16 * 1024;
  JobsApi api(limits, options);

  struct Case {
    std::string name;
    std::string body;
    int status;
    std::string pointer;  // expected among errors[], if any
  };
  auto with = [](const std::function<void(json&)>& change) {
    json j = job_body(3, 1);
    change(j);
    return j.dump();
  };
  std::string deep(10000, '[');
  deep += std::string(10000, ']');
  // The same depth inside one item's data.
  std::string deep_inside = job_body(0).dump();
  deep_inside.replace(deep_inside.find("\"items\":[]"), 10, "\"items\":[{\"id\":\"a\",\"data\":{\"x\":" + deep + "}}]");
  const std::vector<Case> cases = {
      {"invalid JSON", "{\"name\": ", 400, ""},
      {"not JSON at all", "hello", 400, ""},
      {"wrong types", with([](json& j) {
         j["name"] = 7;
         j["labels"] = "yes,no";
         j["redundancy"] = "two";
       }),
       422, "/name"},
      {"0 items", with([](json& j) { j["items"] = json::array(); }), 422, "/items"},
      {"duplicate item ids", with([](json& j) { j["items"][1]["id"] = "i-0"; }), 422, "/items/1/id"},
      {"gold answer not among labels", with([](json& j) { j["gold"][0]["answer"] = "maybe"; }), 422,
       "/gold/0/answer"},
      {"unknown task type", with([](json& j) { j["task_type"] = "transcription"; }), 422, "/task_type"},
      {"deadline in the past", with([](json& j) { j["deadline"] = "2020-01-01T00:00:00Z"; }), 422, "/deadline"},
      {"negative budget", with([](json& j) { j["budget_usd"] = "-5.00"; }), 422, "/budget_usd"},
      {"unknown vendor in allow", with([](json& j) { j["vendors"] = {{"allow", {"scale", "nobody"}}}; }), 422,
       "/vendors/allow/1"},
      {"unknown vendor in deny", with([](json& j) { j["vendors"] = {{"deny", {"ghost"}}}; }), 422,
       "/vendors/deny/0"},
      {"non-UTF-8 string", "{\"name\": \"caf\xe9\", \"items\": []}", 400, ""},
      {"a U+0000 in a string", with([](json& j) { j["items"][0]["data"]["text"] = std::string("a\0b", 3); }), 400,
       ""},
      {"a 10,000-deep nested array", deep, 400, ""},
      {"a 10,000-deep nested array inside an item", deep_inside, 400, ""},
      {"the job is an array", "[1, 2]", 422, ""},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto r = api.post("/v1/jobs", c.body, api.submitter);
    INFO(r.body.substr(0, 500));
    CHECK(r.status == c.status);
    CHECK(r.header("Content-Type") == "application/problem+json");
    if (!c.pointer.empty()) CHECK(has_pointer(r, c.pointer));
    CHECK(api.healthy());
  }

  // Every problem of a job is reported at once.
  auto many = api.post("/v1/jobs", with([](json& j) {
                         j["task_type"] = "transcription";
                         j["deadline"] = "2020-01-01T00:00:00Z";
                         j["items"][2]["id"] = "i-0";
                       }),
                       api.submitter);
  CHECK(many.status == 422);
  CHECK(has_pointer(many, "/task_type"));
  CHECK(has_pointer(many, "/deadline"));
  CHECK(has_pointer(many, "/items/2/id"));

  // Bodies: the upload routes take up to their own limit; others keep the server's.
  json big = job_body(1500);  // ~60 KB: over the server's 16 KiB, under the route's 256 KiB
  REQUIRE(big.dump().size() > options.body_limit_bytes);
  CHECK(api.post("/v1/jobs", big.dump(), api.submitter).status == 201);
  auto too_big = api.post("/v1/jobs", job_body(8000).dump(), api.submitter);
  CHECK(too_big.status == 413);
  CHECK(problem_type(too_big) == "/problems/payload-too-large");
  const std::string some_id = "00000000-0000-0000-0000-000000000000";
  CHECK(api.post("/v1/jobs/" + some_id + "/start", big.dump(), api.submitter).status == 413);
  CHECK(api.healthy());
  CHECK(api.count("SELECT count(*) FROM jobs") == 1);  // only the one good job

  // Query parameters and headers.
  CHECK(api.post("/v1/jobs?draft=maybe", job_body(1).dump(), api.submitter).status == 400);
  CHECK(api.post("/v1/jobs", job_body(1).dump(), api.submitter, {{"Idempotency-Key", std::string(300, 'k')}}).status ==
        400);
  CHECK(api.get("/v1/jobs?limit=0", api.viewer).status == 400);
  CHECK(api.get("/v1/jobs?limit=501", api.viewer).status == 400);
  CHECK(api.get("/v1/jobs?limit=ten", api.viewer).status == 400);
  CHECK(api.get("/v1/jobs?status=sleeping", api.viewer).status == 400);
  CHECK(api.get("/v1/jobs?cursor=%21%21", api.viewer).status == 400);
  CHECK(api.get("/v1/jobs?cursor=abc", api.viewer).status == 400);
  CHECK(api.get("/v1/jobs/not-a-uuid", api.viewer).status == 404);
  CHECK(api.get("/v1/jobs/not-a-uuid/results", api.viewer).status == 404);
  CHECK(api.get("/v1/jobs/" + some_id, api.viewer).status == 404);
  CHECK(api.healthy());
}

TEST_CASE("jobs api: a draft takes items in parts, then starts", "[.db][jobs-api]") {
  config::JobsConfig limits;
  limits.max_items_per_job = 50;
  JobsApi api(limits);
  json draft = job_body(0);
  auto created = api.post("/v1/jobs?draft=true", draft.dump(), api.submitter);
  INFO(created.body);
  REQUIRE(created.status == 201);
  const std::string id = json::parse(created.body)["id"];
  CHECK(json::parse(created.body)["status"] == "draft");
  const std::string base = "/v1/jobs/" + id;

  // Starting without items is refused.
  auto empty_start = api.post(base + "/start", "", api.submitter);
  CHECK(empty_start.status == 422);
  CHECK(has_pointer(empty_start, "/items"));

  json part1 = {{"items", job_body(20, 0, "a-")["items"]}, {"gold", job_body(0, 2)["gold"]}};
  auto appended = api.post(base + "/items", part1.dump(), api.submitter);
  INFO(appended.body);
  REQUIRE(appended.status == 200);
  CHECK(json::parse(appended.body)["counts"] == json{{"items", 20}, {"gold", 2}});

  json part2 = {{"items", job_body(20, 0, "b-")["items"]}};
  part2["items"][3]["id"] = "a-5";  // already stored
  part2["items"][4]["id"] = "g-1";  // a stored gold id
  auto dup = api.post(base + "/items", part2.dump(), api.submitter);
  CHECK(dup.status == 409);
  CHECK(has_pointer(dup, "/items/3/id"));
  CHECK(has_pointer(dup, "/items/4/id"));
  CHECK(api.count("SELECT count(*) FROM job_items") == 22);  // nothing of part2 was stored

  // Checked like a job: pointers into this request.
  json bad = {{"items", {{{"id", "c-1"}, {"data", "text"}}}}, {"gold", {{{"id", "c-2"}, {"data", json::object()},
                                                                        {"answer", "perhaps"}}}}};
  auto invalid = api.post(base + "/items", bad.dump(), api.submitter);
  CHECK(invalid.status == 422);
  CHECK(has_pointer(invalid, "/items/0/data"));
  CHECK(has_pointer(invalid, "/gold/0/answer"));
  CHECK(api.post(base + "/items", "{\"items\": []}", api.submitter).status == 422);
  CHECK(api.post(base + "/items", "{\"items\": [", api.submitter).status == 400);

  // max_items_per_job counts what is stored plus what comes.
  auto too_many = api.post(base + "/items", json{{"items", job_body(29, 0, "c-")["items"]}}.dump(), api.submitter);
  CHECK(too_many.status == 422);
  auto fits = api.post(base + "/items", json{{"items", job_body(28, 0, "c-")["items"]}}.dump(), api.submitter);
  CHECK(fits.status == 200);

  auto started = api.post(base + "/start", "", api.submitter);
  INFO(started.body);
  REQUIRE(started.status == 200);
  auto job = json::parse(started.body);
  CHECK(job["status"] == "queued");
  CHECK(job["counts"]["items"] == 48);
  CHECK(job["counts"]["gold"] == 2);
  CHECK(api.count("SELECT count(*) FROM job_items WHERE job_id = '" + id + "'") == 50);

  // No longer a draft: no more items, no second start.
  CHECK(api.post(base + "/items", json{{"items", job_body(1, 0, "d-")["items"]}}.dump(), api.submitter).status == 409);
  CHECK(api.post(base + "/start", "", api.submitter).status == 409);
  // A job created without ?draft is not a draft either.
  const std::string queued = api.create(job_body(2));
  CHECK(api.post("/v1/jobs/" + queued + "/items", json{{"items", job_body(1, 0, "e-")["items"]}}.dump(),
                 api.submitter)
            .status == 409);
}

TEST_CASE("jobs api: another team's job does not exist for it, viewers cannot submit", "[.db][jobs-api]") {
  JobsApi api;
  auto draft = api.post("/v1/jobs?draft=true", job_body(1).dump(), api.submitter);
  REQUIRE(draft.status == 201);
  const std::string id = json::parse(draft.body)["id"];
  const std::string base = "/v1/jobs/" + id;
  const std::string items = json{{"items", job_body(1, 0, "x-")["items"]}}.dump();

  const auto missing = api.get("/v1/jobs/00000000-0000-0000-0000-000000000000", api.other_team);
  CHECK(missing.status == 404);
  for (const auto& r : {api.get(base, api.other_team), api.get(base + "/results", api.other_team),
                        api.post(base + "/items", items, api.other_team), api.post(base + "/start", "", api.other_team)}) {
    CHECK(r.status == 404);
    CHECK(problem_type(r) == "/problems/not-found");
  }
  auto listed = api.get("/v1/jobs", api.other_team);
  REQUIRE(listed.status == 200);
  CHECK(json::parse(listed.body)["jobs"].empty());
  // Team B's attempts changed nothing.
  CHECK(api.count("SELECT count(*) FROM job_items WHERE item_id = 'x-0'") == 0);
  CHECK(api.get(base, api.viewer).status == 200);

  auto forbidden = api.post("/v1/jobs", job_body(1).dump(), api.viewer);
  CHECK(forbidden.status == 403);
  CHECK(api.post(base + "/items", items, api.viewer).status == 403);
  CHECK(api.post(base + "/start", "", api.viewer).status == 403);
  CHECK(api.get("/v1/jobs", "").status == 401);
  CHECK(api.count("SELECT count(*) FROM jobs") == 1);
}

TEST_CASE("jobs api: the job list pages newest first with a cursor and filters by status", "[.db][jobs-api]") {
  JobsApi api;
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(api.create(job_body(1)));
  auto draft = api.post("/v1/jobs?draft=true", job_body(0).dump(), api.submitter);
  REQUIRE(draft.status == 201);
  ids.push_back(json::parse(draft.body)["id"]);
  // Two jobs in the same microsecond must still page without loss or repeat.
  api.exec("UPDATE jobs SET created_at = (SELECT created_at FROM jobs WHERE id = '" + ids[2] + "') WHERE id = '" +
           ids[3] + "'");

  std::vector<std::string> seen;
  std::string path = "/v1/jobs?limit=3";
  int pages = 0;
  while (true) {
    auto r = api.get(path, api.viewer);
    INFO(r.body);
    REQUIRE(r.status == 200);
    auto page = json::parse(r.body);
    CHECK(page["jobs"].size() <= 3);
    for (const auto& j : page["jobs"]) seen.push_back(j["id"]);
    ++pages;
    if (page["next_cursor"].is_null()) break;
    REQUIRE(pages < 10);
    path = "/v1/jobs?limit=3&cursor=" + page["next_cursor"].get<std::string>();
  }
  CHECK(pages == 3);
  CHECK(seen.size() == 8);
  CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 8);
  CHECK(seen.front() == ids.back());  // newest first

  auto drafts = api.get("/v1/jobs?status=draft", api.viewer);
  REQUIRE(drafts.status == 200);
  auto list = json::parse(drafts.body)["jobs"];
  REQUIRE(list.size() == 1);
  CHECK(list[0]["id"] == ids.back());
  CHECK(list[0]["status"] == "draft");
  CHECK(json::parse(api.get("/v1/jobs?status=queued&limit=500", api.viewer).body)["jobs"].size() == 7);
  CHECK(json::parse(api.get("/v1/jobs?status=completed", api.viewer).body)["jobs"].empty());
}

TEST_CASE("jobs api: results list finished items with their judgments, as JSON pages or JSONL", "[.db][jobs-api]") {
  JobsApi api;
  const std::string id = api.create(job_body(5, 1));
  const std::string q = "'" + id + "'";
  // What dispatch records: two completed judgments for i-0..i-2 (labeled), i-3 unlabeled, i-4 still
  // open with one judgment, and the gold item labeled too.
  api.exec("INSERT INTO assignments (job_id, item_id, vendor_id, state, answer, worker_id, quote_micros, cost_micros) "
           "SELECT " + q + ", item_id, v.vendor, 'completed', 'yes', v.vendor || '-w1', 40000, 40000 "
           "FROM job_items, (VALUES ('scale'), ('surge')) AS v(vendor) "
           "WHERE job_id = " + q + " AND item_id IN ('i-0', 'i-1', 'i-2', 'i-4', 'g-0')");
  api.exec("INSERT INTO assignments (job_id, item_id, vendor_id, state, quote_micros) VALUES "
           "(" + q + ", 'i-3', 'scale', 'failed', 40000), (" + q + ", 'i-3', 'surge', 'canceled', 40000), "
           "(" + q + ", 'i-4', 'scale-small', 'submitted', 50000)");
  api.exec("UPDATE job_items SET state = 'labeled', label = 'yes', confidence = 1, method = 'majority' "
           "WHERE job_id = " + q + " AND item_id IN ('i-0', 'i-1', 'i-2', 'g-0')");
  api.exec("UPDATE job_items SET state = 'unlabeled' WHERE job_id = " + q + " AND item_id = 'i-3'");

  auto first = api.get("/v1/jobs/" + id + "/results?limit=2", api.viewer);
  INFO(first.body);
  REQUIRE(first.status == 200);
  auto page = json::parse(first.body);
  REQUIRE(page["results"].size() == 2);
  CHECK(page["results"][0]["item_id"] == "i-0");
  CHECK(page["results"][0]["label"] == "yes");
  CHECK(page["results"][0]["confidence"] == 1.0);
  CHECK(page["results"][0]["method"] == "majority");
  CHECK(page["results"][0]["judgments"] ==
        json::parse(R"([{"vendor": "scale", "label": "yes", "worker": "scale-w1"},
                        {"vendor": "surge", "label": "yes", "worker": "surge-w1"}])"));
  REQUIRE(page["next_cursor"].is_string());
  auto second = json::parse(
      api.get("/v1/jobs/" + id + "/results?limit=2&cursor=" + page["next_cursor"].get<std::string>(), api.viewer).body);
  REQUIRE(second["results"].size() == 2);
  CHECK(second["results"][0]["item_id"] == "i-2");
  CHECK(second["results"][1]["item_id"] == "i-3");
  CHECK(second["results"][1]["label"].is_null());
  CHECK(second["results"][1]["judgments"].empty());
  CHECK(second["next_cursor"].is_null());  // i-4 is open, g-0 is gold: neither is listed

  // JSONL: one object per line, the next page in a Link header.
  auto lines = api.get("/v1/jobs/" + id + "/results?limit=3", api.viewer, {{"Accept", "application/x-ndjson"}});
  REQUIRE(lines.status == 200);
  CHECK(lines.header("Content-Type") == "application/x-ndjson");
  std::vector<json> objects;
  std::size_t start = 0;
  for (auto nl = lines.body.find('\n'); nl != std::string::npos; start = nl + 1, nl = lines.body.find('\n', start))
    objects.push_back(json::parse(lines.body.substr(start, nl - start)));
  REQUIRE(objects.size() == 3);
  CHECK(objects[2]["item_id"] == "i-2");
  auto link = lines.header("Link");
  REQUIRE(link);
  CHECK(link->find("rel=\"next\"") != std::string::npos);
  const auto next = link->substr(1, link->find('>') - 1);
  auto rest = api.get(next, api.viewer, {{"Accept", "application/x-ndjson"}});
  REQUIRE(rest.status == 200);
  CHECK(json::parse(rest.body.substr(0, rest.body.find('\n')))["item_id"] == "i-3");
  CHECK(!rest.header("Link"));
  CHECK(api.get("/v1/jobs/" + id + "/results?format=jsonl", api.viewer).header("Content-Type") ==
        "application/x-ndjson");
  CHECK(api.get("/v1/jobs/" + id + "/results?format=xml", api.viewer).status == 400);

  // The job's progress: item states and assignments per vendor, with spend.
  auto job = json::parse(api.get("/v1/jobs/" + id, api.viewer).body);
  CHECK(job["counts"] == json{{"items", 5}, {"gold", 1}, {"open", 1}, {"labeled", 3}, {"unlabeled", 1}});
  CHECK(job["assignments"] == json{{"queued", 0}, {"paused", 0}, {"sending", 0}, {"submitted", 1},
                                   {"completed", 10}, {"failed", 1}, {"canceled", 1}});
  REQUIRE(job["per_vendor"].size() == 3);
  const auto& scale = job["per_vendor"][0];
  CHECK(scale["vendor"] == "scale");
  CHECK(scale["completed"] == 5);
  CHECK(scale["failed"] == 1);
  CHECK(scale["spend_usd"] == "0.20");
  CHECK(scale["quoted_usd"] == "0.20");  // the failed unit's quote is not counted
  CHECK(job["per_vendor"][1]["vendor"] == "scale-small");
  CHECK(job["per_vendor"][1]["submitted"] == 1);
  CHECK(job["per_vendor"][1]["quoted_usd"] == "0.05");
  CHECK(job["spend_usd"] == "0.40");
}
