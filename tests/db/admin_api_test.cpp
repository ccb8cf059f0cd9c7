// The ops surface's access control against a real PostgreSQL: teams and API keys over the API
// (create, list, rotate, revoke, without a restart), the audit trail of every admin change, each
// role against each endpoint family, and per-key rate limits shared by several processes.
#include <atomic>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "auth/rate_limiter.hpp"
#include "db/team_store.hpp"
#include "support/dataset_fixture.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using json = nlohmann::json;

namespace {

json body_of(const HttpResult& r) { return json::parse(r.body); }

// The audit trail as an admin reads it, newest first, following every page.
std::vector<json> audit_trail(ApiFixture& api, const std::string& query = "") {
  std::vector<json> out;
  std::string cursor;
  for (int page = 0; page < 100; ++page) {
    auto got = api.get("/v1/audit?limit=2" + query + (cursor.empty() ? "" : "&cursor=" + cursor), api.admin);
    REQUIRE(got.status == 200);
    auto body = body_of(got);
    for (const auto& e : body["entries"]) out.push_back(e);
    if (body["next_cursor"].is_null()) return out;
    cursor = body["next_cursor"].get<std::string>();
  }
  FAIL("audit pages never ended");
  return out;
}

std::string prefix_of(const std::string& key) { return key.substr(4, 12); }

}  // namespace

TEST_CASE("admin api: teams and keys are made, rotated and revoked without a restart, each change audited",
          "[.db][admin-api]") {
  ApiFixture api(kTwoVendors);

  // ---- teams ----
  auto team = api.post("/v1/teams", R"({"name": "ml-vision", "monthly_budget_usd": "2500.00",
                                         "denied_vendors": ["surge", "surge"]})",
                       api.admin);
  REQUIRE(team.status == 201);
  CHECK(body_of(team)["name"] == "ml-vision");
  CHECK(body_of(team)["monthly_budget_usd"] == "2500.00");
  CHECK(body_of(team)["denied_vendors"] == json::array({"surge"}));
  CHECK(api.count("SELECT monthly_budget_micros FROM teams WHERE name = 'ml-vision'") == 2500000000);
  auto again = api.post("/v1/teams", R"({"name": "ml-vision"})", api.admin);
  CHECK(again.status == 409);
  CHECK(problem_type(again) == "/problems/team-exists");
  auto bad = api.post("/v1/teams", R"({"name": "Bad Name", "monthly_budget_usd": 12, "colour": "red"})", api.admin);
  REQUIRE(bad.status == 422);
  CHECK(problem_type(bad) == "/problems/invalid-team");
  CHECK(body_of(bad)["errors"].size() == 3);
  CHECK(api.post("/v1/teams", "{", api.admin).status == 400);
  CHECK(api.post("/v1/teams", "{}", api.admin).status == 422);

  // Listing pages through every team (team-a, team-b, ml-vision) one at a time.
  std::vector<std::string> names;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto got = api.get("/v1/teams?limit=1" + (cursor.empty() ? "" : "&cursor=" + cursor), api.admin);
    REQUIRE(got.status == 200);
    const auto body = body_of(got);
    for (const auto& t : body["teams"]) names.push_back(t["name"]);
    if (body["next_cursor"].is_null()) break;
    cursor = body["next_cursor"];
  }
  CHECK(names == std::vector<std::string>{"team-a", "team-b", "ml-vision"});
  CHECK(api.get("/v1/teams?cursor=!!", api.admin).status == 400);
  CHECK(api.get("/v1/teams?limit=0", api.admin).status == 400);

  // ---- keys ----
  auto created = api.post("/v1/keys", R"({"team": "ml-vision", "role": "viewer", "label": "wall display"})", api.admin);
  REQUIRE(created.status == 201);
  CHECK(created.header("Cache-Control") == "no-store");
  const auto first = body_of(created);
  const std::string viewer_key = first["key"];
  CHECK(first["prefix"] == prefix_of(viewer_key));
  CHECK(first["role"] == "viewer");
  CHECK(first["rate_limit"].is_null());
  // The new key works at once, with its role and for its team only.
  CHECK(api.get("/v1/vendors/scores", viewer_key).status == 200);
  CHECK(api.post("/v1/jobs", DatasetFixture::job_body(2).dump(), viewer_key).status == 403);
  CHECK(body_of(api.get("/v1/jobs", viewer_key))["jobs"].empty());
  // Unknown team and bad fields: 422 with a pointer each.
  auto no_team = api.post("/v1/keys", R"({"team": "nobody", "role": "viewer"})", api.admin);
  REQUIRE(no_team.status == 422);
  CHECK(body_of(no_team)["errors"][0]["pointer"] == "/team");
  auto bad_key = api.post("/v1/keys", R"({"team": "ml-vision", "role": "owner", "rate_limit": {"burst": 0}})", api.admin);
  REQUIRE(bad_key.status == 422);
  CHECK(body_of(bad_key)["errors"].size() == 2);

  // Lists never show a secret; the database holds only its hash.
  auto listed = api.get("/v1/keys?team=ml-vision", api.admin);
  REQUIRE(listed.status == 200);
  REQUIRE(body_of(listed)["keys"].size() == 1);
  CHECK_FALSE(body_of(listed)["keys"][0].contains("key"));
  const std::string secret = viewer_key.substr(17);
  CHECK(listed.body.find(secret) == std::string::npos);
  CHECK(api.count("SELECT count(*) FROM api_keys WHERE secret_hash = '" + auth::hash_secret(secret) + "'") == 1);
  CHECK(api.get("/v1/keys?team=nobody", api.admin).status == 400);

  // Rotation with a grace period: both keys work until the old one expires.
  auto rotated = api.post("/v1/keys/" + std::to_string(first["id"].get<long>()) + "/rotate",
                          R"({"grace_seconds": 3600})", api.admin);
  REQUIRE(rotated.status == 201);
  const auto second = body_of(rotated);
  const std::string rotated_key = second["key"];
  CHECK(second["replaces"] == first["id"]);
  CHECK(second["label"] == "wall display");
  CHECK(second["role"] == "viewer");
  CHECK_FALSE(second["replaced"]["expires_at"].is_null());
  CHECK(api.get("/v1/vendors/scores", viewer_key).status == 200);
  CHECK(api.get("/v1/vendors/scores", rotated_key).status == 200);

  // Rotation without grace: the replaced key stops at once, the new one works.
  auto again_rotated = api.post("/v1/keys/" + std::to_string(second["id"].get<long>()) + "/rotate", "", api.admin);
  REQUIRE(again_rotated.status == 201);
  const std::string third_key = body_of(again_rotated)["key"];
  CHECK(api.get("/v1/vendors/scores", rotated_key).status == 401);
  CHECK(api.get("/v1/vendors/scores", third_key).status == 200);
  CHECK(api.post("/v1/keys/" + std::to_string(second["id"].get<long>()) + "/rotate", "", api.admin).status == 409);

  // Revocation: at once, idempotent, audited once.
  const auto third_id = std::to_string(body_of(again_rotated)["id"].get<long>());
  auto revoked = api.request("DELETE", "/v1/keys/" + third_id, "", api.admin);
  REQUIRE(revoked.status == 200);
  CHECK_FALSE(body_of(revoked)["revoked_at"].is_null());
  CHECK(api.get("/v1/vendors/scores", third_key).status == 401);
  CHECK(api.request("DELETE", "/v1/keys/" + third_id, "", api.admin).status == 200);
  CHECK(api.request("DELETE", "/v1/keys/999999", "", api.admin).status == 404);
  CHECK(api.request("DELETE", "/v1/keys/abc", "", api.admin).status == 404);
  auto active = body_of(api.get("/v1/keys?team=ml-vision", api.admin))["keys"];
  CHECK(active.size() == 1);  // only the first key, in its grace period
  CHECK(body_of(api.get("/v1/keys?team=ml-vision&include_revoked=true", api.admin))["keys"].size() == 3);

  // ---- vendors ----
  auto drained = api.request("PATCH", "/v1/vendors/surge", R"({"enabled": false})", api.admin);
  REQUIRE(drained.status == 200);
  REQUIRE(api.request("PATCH", "/v1/vendors/surge", R"({"weight": 0.5})", api.admin).status == 200);

  // ---- the trail ----
  const auto trail = audit_trail(api);
  std::vector<std::string> actions;
  for (const auto& e : trail) actions.push_back(e["action"]);
  CHECK(actions == std::vector<std::string>{"vendor.update", "vendor.update", "key.revoke", "key.rotate", "key.rotate",
                                            "key.create", "team.create"});
  for (const auto& e : trail) {
    CHECK(e["actor"]["type"] == "api_key");
    CHECK(e["actor"]["key_prefix"] == prefix_of(api.admin));
    CHECK(e["actor"]["team"] == "team-a");
    CHECK(e["request_id"].is_string());
  }
  CHECK(trail[0]["before"] == json{{"enabled", false}, {"weight", nullptr}});
  CHECK(trail[0]["after"] == json{{"enabled", false}, {"weight", 0.5}});
  CHECK(trail[1]["before"].is_null());
  CHECK(trail[1]["target"] == json{{"type", "vendor"}, {"id", "surge"}});
  CHECK(trail[2]["before"]["revoked_at"].is_null());
  CHECK(trail[2]["after"]["revoked_at"].is_string());
  CHECK(trail[6]["before"].is_null());
  CHECK(trail[6]["after"]["denied_vendors"] == json::array({"surge"}));
  // The request id in the trail is the one the change's response carried.
  CHECK(trail[0]["request_id"] == api.text("SELECT request_id FROM audit_log ORDER BY id DESC LIMIT 1"));
  // No secret is ever written to the trail.
  for (const auto& key : {viewer_key, rotated_key, third_key})
    CHECK(api.count("SELECT count(*) FROM audit_log WHERE after::text LIKE '%" + key.substr(17) + "%'") == 0);

  CHECK(audit_trail(api, "&action=key.rotate").size() == 2);
  CHECK(audit_trail(api, "&since=2261-01-01T00:00:00Z").empty());
  CHECK(api.get("/v1/audit?since=2999-01-01T00:00:00Z", api.admin).status == 400);  // past what the clock holds
  CHECK(api.get("/v1/audit?since=yesterday", api.admin).status == 400);
  CHECK(api.get("/v1/audit?colour=red", api.admin).status == 400);
}

TEST_CASE("roles: each role against each endpoint family gets 2xx, 403 or 404", "[.db][admin-api]") {
  DatasetFixture api;
  const auto own_job = api.completed_job(4, api.submitter);
  const auto other_job = api.completed_job(4, api.other_team);
  const std::string other_admin = make_key(api.url(), "team-b", auth::Role::admin);
  REQUIRE(api.post("/v1/datasets", json({{"name", "b-set"}, {"jobs", {other_job}}}).dump(), api.other_team).status ==
          202);
  api.build_all();

  struct Case {
    const char* family;
    std::string method, path, body;
    int viewer, submitter, admin;
  };
  int dataset_name = 0;
  auto dataset_body = [&] { return json({{"name", "set-" + std::to_string(++dataset_name)}, {"jobs", {own_job}}}).dump(); };
  const std::vector<Case> cases = {
      {"scores", "GET", "/v1/vendors/scores", "", 200, 200, 200},
      {"concentration", "GET", "/v1/concentration", "", 200, 200, 200},
      {"vendors", "GET", "/v1/vendors", "", 200, 200, 200},
      {"jobs: list", "GET", "/v1/jobs", "", 200, 200, 200},
      {"jobs: read own", "GET", "/v1/jobs/" + own_job, "", 200, 200, 200},
      {"jobs: results", "GET", "/v1/jobs/" + own_job + "/results", "", 200, 200, 200},
      {"jobs: another team's", "GET", "/v1/jobs/" + other_job, "", 404, 404, 404},
      {"jobs: create", "POST", "/v1/jobs", DatasetFixture::job_body(2).dump(), 403, 201, 201},
      {"jobs: cancel another team's", "POST", "/v1/jobs/" + other_job + "/cancel", "", 403, 404, 404},
      {"datasets: list", "GET", "/v1/datasets", "", 200, 200, 200},
      {"datasets: create", "POST", "/v1/datasets", "", 403, 202, 202},
      {"datasets: another team's", "GET", "/v1/datasets/b-set/versions/latest", "", 404, 404, 404},
      {"vendors: change", "PATCH", "/v1/vendors/scale", R"({"weight": 1})", 403, 403, 200},
      {"teams: create", "POST", "/v1/teams", "", 403, 403, 201},
      {"teams: list", "GET", "/v1/teams", "", 403, 403, 200},
      {"keys: create", "POST", "/v1/keys", R"({"team": "team-a", "role": "viewer"})", 403, 403, 201},
      {"keys: list", "GET", "/v1/keys", "", 403, 403, 200},
      {"keys: revoke unknown", "DELETE", "/v1/keys/987654", "", 403, 403, 404},
      {"audit", "GET", "/v1/audit", "", 403, 403, 200},
  };
  int team_name = 0;
  for (const auto& c : cases) {
    const std::pair<const std::string*, int> roles[] = {
        {&api.viewer, c.viewer}, {&api.submitter, c.submitter}, {&api.admin, c.admin}};
    for (const auto& [key, expected] : roles) {
      std::string body = c.body;
      if (std::string(c.family) == "datasets: create") body = dataset_body();
      if (std::string(c.family) == "teams: create") body = json({{"name", "t-" + std::to_string(++team_name)}}).dump();
      auto got = api.request(c.method, c.path, body, *key);
      INFO(c.family << " as " << (key == &api.viewer ? "viewer" : key == &api.submitter ? "submitter" : "admin")
                    << ": " << got.body);
      CHECK(got.status == expected);
    }
  }
  // An admin of another team is an admin of the platform, not of this team's data.
  CHECK(api.get("/v1/jobs/" + own_job, other_admin).status == 404);
  CHECK(api.get("/v1/audit", other_admin).status == 200);
  // No key, or a wrong one: 401 everywhere under /v1; the ops pages need none.
  CHECK(http_request(api.port(), "GET", "/v1/vendors/scores").status == 401);
  CHECK(api.get("/v1/audit", "lbk_000000000000_0000000000000000000000000000000000000000").status == 401);
  for (const char* open : {"/healthz", "/openapi.json", "/dashboard", "/dashboard/dashboard.js"})
    CHECK(http_request(api.port(), "GET", open).status == 200);
}

TEST_CASE("rate limits: a key over its rate gets 429 with Retry-After, processes share one allowance",
          "[.db][admin-api]") {
  ApiFixture api(kTwoVendors);
  auth::shared_rate_limiter().clear();
  auto created = api.post("/v1/keys", R"({"team": "team-a", "role": "viewer",
                                          "rate_limit": {"requests_per_second": 0.5, "burst": 3}})",
                          api.admin);
  REQUIRE(created.status == 201);
  const std::string key = body_of(created)["key"];
  CHECK(body_of(created)["rate_limit"] == json{{"requests_per_second", 0.5}, {"burst", 3}});
  // The burst, then refusals until the bucket refills (one token per 2 s).
  for (int i = 0; i < 3; ++i) CHECK(api.get("/v1/vendors", key).status == 200);
  auto refused = api.get("/v1/vendors", key);
  REQUIRE(refused.status == 429);
  CHECK(problem_type(refused) == "/problems/rate-limited");
  REQUIRE(refused.header("Retry-After"));
  const int retry_after = std::stoi(*refused.header("Retry-After"));
  CHECK(retry_after >= 1);
  CHECK(retry_after <= 2);
  // Other keys are not affected.
  CHECK(api.get("/v1/vendors", api.viewer).status == 200);

  // Several processes: each has its own limiter (as each broker process does) over the one bucket
  // in the database. Whatever the interleaving, together they admit at most burst + rate x time.
  const auto key_id = api.count("SELECT id FROM api_keys WHERE prefix = '" + prefix_of(key) + "'");
  const auth::RateLimitPolicy policy{40, 10};
  api.exec("DELETE FROM rate_buckets");
  std::atomic<int> admitted{0}, refusals{0};
  const auto started = std::chrono::steady_clock::now();
  const auto stop_at = started + std::chrono::milliseconds(1500);
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<auth::RateLimiter>> processes;
  for (int p = 0; p < 3; ++p) processes.push_back(std::make_unique<auth::RateLimiter>(std::chrono::milliseconds(100)));
  for (int p = 0; p < 3; ++p)
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&, p] {
        pqxx::connection c(api.url());
        const auth::RateLimiter::TakeTokens take = [&c](std::int64_t id, const auth::RateLimitPolicy& pol, int wanted) {
          const auto grant = db::take_rate_tokens(c, id, pol.per_second, pol.burst, wanted);
          return auth::TokenGrant{grant.granted, grant.tokens_left};
        };
        while (std::chrono::steady_clock::now() < stop_at) {
          if (processes[p]->admit(key_id, policy, take).allowed)
            ++admitted;
          else
            ++refusals;
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
      });
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  INFO("admitted " << admitted << " refused " << refusals << " in " << elapsed << " s");
  CHECK(admitted <= policy.burst + policy.per_second * elapsed);
  CHECK(admitted >= policy.burst);
  CHECK(refusals > 0);
}
