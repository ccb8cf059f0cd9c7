// Routing's HTTP surface against a real PostgreSQL: PATCH /v1/vendors/{id} (admin overrides that
// every process applies), GET /v1/vendors (routing state, breaker), GET /v1/jobs/{id}/routing
// (the decision log, per team, a page at a time).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/api_fixture.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using json = nlohmann::json;

namespace {

constexpr const char* kVendors = R"({"vendors": [
  {"id": "scale", "kind": "scale", "base_url": "http://127.0.0.1:9/scale/v1",
   "api_key": "k1", "callback_secret": "callback-secret-scale-0123",
   "capabilities": {"task_types": ["classification"], "domains": ["general"], "expertise": ["general"]},
   "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"}},
  {"id": "surge", "kind": "surge", "base_url": "http://127.0.0.1:9/surge/api",
   "api_key": "k3", "callback_secret": "callback-secret-surge-0123", "weight": 2,
   "capabilities": {"task_types": ["classification"], "domains": ["general"], "expertise": ["general"]},
   "payment_per_response": "0.15"}
]})";

json vendor_named(const json& list, const std::string& id) {
  for (const auto& v : list["vendors"])
    if (v["id"] == id) return v;
  FAIL("no vendor " << id);
  return {};
}

}  // namespace

TEST_CASE("routing api: admins drain and restore a vendor, the override is stored and shown", "[.db][routing-api]") {
  ApiFixture api(kVendors);

  auto listed = json::parse(api.get("/v1/vendors", api.viewer).body);
  auto surge = vendor_named(listed, "surge");
  CHECK(surge["enabled"] == true);
  CHECK(surge["weight"] == 2.0);  // from the config
  CHECK(surge["draining"] == false);
  CHECK(surge["circuit_breaker"]["state"] == "closed");

  // Only admins change vendors.
  CHECK(api.request("PATCH", "/v1/vendors/surge", R"({"enabled": false})", api.submitter).status == 403);
  CHECK(api.request("PATCH", "/v1/vendors/nobody", R"({"enabled": false})", api.admin).status == 404);
  auto bad = api.request("PATCH", "/v1/vendors/surge", R"({"enabled": "no", "weight": -1, "price": 3})", api.admin);
  REQUIRE(bad.status == 422);
  CHECK(problem_type(bad) == "/problems/invalid-vendor-change");
  auto errors = json::parse(bad.body)["errors"];
  REQUIRE(errors.size() == 3);
  CHECK(api.request("PATCH", "/v1/vendors/surge", "{}", api.admin).status == 422);
  CHECK(api.request("PATCH", "/v1/vendors/surge", "not json", api.admin).status == 400);

  auto drained = api.request("PATCH", "/v1/vendors/surge", R"({"enabled": false})", api.admin);
  REQUIRE(drained.status == 200);
  CHECK(json::parse(drained.body)["draining"] == true);
  CHECK(api.count("SELECT count(*) FROM vendor_settings WHERE vendor_id = 'surge' AND NOT enabled AND weight IS NULL") ==
        1);
  surge = vendor_named(json::parse(api.get("/v1/vendors", api.viewer).body), "surge");
  CHECK(surge["enabled"] == false);
  CHECK(surge["weight"] == 2.0);  // unchanged: only the given fields change

  // A weight change keeps the stored enabled flag; enabling again restores the vendor.
  REQUIRE(api.request("PATCH", "/v1/vendors/surge", R"({"weight": 0.5})", api.admin).status == 200);
  surge = vendor_named(json::parse(api.get("/v1/vendors", api.viewer).body), "surge");
  CHECK(surge["enabled"] == false);
  CHECK(surge["weight"] == 0.5);
  REQUIRE(api.request("PATCH", "/v1/vendors/surge", R"({"enabled": true})", api.admin).status == 200);
  surge = vendor_named(json::parse(api.get("/v1/vendors", api.viewer).body), "surge");
  CHECK(surge["draining"] == false);
  // Weight 0 drains as well.
  REQUIRE(api.request("PATCH", "/v1/vendors/scale", R"({"weight": 0})", api.admin).status == 200);
  CHECK(vendor_named(json::parse(api.get("/v1/vendors", api.viewer).body), "scale")["draining"] == true);
}

TEST_CASE("routing api: a job's decision log is its team's, newest first, a page at a time", "[.db][routing-api]") {
  ApiFixture api(kVendors);
  json job = {{"name", "j"},
              {"task_type", "classification"},
              {"domain", "general"},
              {"labels", {"a", "b"}},
              {"items", {{{"id", "i-1"}, {"data", {{"text", "x"}}}}}},
              {"budget_usd", "10.00"},
              {"deadline", "2099-01-01T00:00:00Z"}};
  auto created = api.post("/v1/jobs", job.dump(), api.submitter);
  REQUIRE(created.status == 201);
  const std::string id = json::parse(created.body)["id"];
  for (int i = 1; i <= 3; ++i)
    api.exec("INSERT INTO routing_decisions (job_id, kind, items, decision) VALUES ('" + id + "', 'plan', " +
             std::to_string(i) + ", '{\"n\": " + std::to_string(i) + ", \"cap_unsatisfiable\": " +
             (i == 2 ? "true" : "false") + "}')");

  auto page = api.get("/v1/jobs/" + id + "/routing?limit=2", api.viewer);
  REQUIRE(page.status == 200);
  auto body = json::parse(page.body);
  REQUIRE(body["decisions"].size() == 2);
  CHECK(body["total"] == 3);
  CHECK(body["cap_unsatisfiable"] == 1);
  CHECK(body["decisions"][0]["decision"]["n"] == 3);
  CHECK(body["decisions"][0]["kind"] == "plan");
  CHECK(body["decisions"][0]["items"] == 3);
  CHECK(body["decisions"][0]["at"].get<std::string>().back() == 'Z');
  REQUIRE(body["next_cursor"].is_string());
  auto rest = json::parse(
      api.get("/v1/jobs/" + id + "/routing?cursor=" + body["next_cursor"].get<std::string>(), api.viewer).body);
  REQUIRE(rest["decisions"].size() == 1);
  CHECK(rest["decisions"][0]["decision"]["n"] == 1);
  CHECK(rest["next_cursor"].is_null());

  // Another team's job, an unknown or malformed id: 404 alike. Bad queries: 400.
  CHECK(api.get("/v1/jobs/" + id + "/routing", api.other_team).status == 404);
  CHECK(api.get("/v1/jobs/00000000-0000-0000-0000-000000000000/routing", api.viewer).status == 404);
  CHECK(api.get("/v1/jobs/not-a-uuid/routing", api.viewer).status == 404);
  const auto bad_limit = api.get("/v1/jobs/" + id + "/routing?limit=0", api.viewer);
  CHECK(bad_limit.status == 400);
  CHECK(problem_type(bad_limit) == "/problems/bad-query");
  CHECK(api.get("/v1/jobs/" + id + "/routing?limit=501", api.viewer).status == 400);
  CHECK(api.get("/v1/jobs/" + id + "/routing?cursor=abc", api.viewer).status == 400);
  CHECK(api.get("/v1/jobs/" + id + "/routing?sort=asc", api.viewer).status == 400);
}
