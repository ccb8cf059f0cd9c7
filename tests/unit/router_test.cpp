#include "http/router.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "http/problem.hpp"
#include "http/request.hpp"

using namespace labelbroker::http;

namespace {

Handler named(std::string name) {
  return [name](Request&) { return Response::text(200, name); };
}

std::string run(const Router& router, const std::string& method, const std::string& path) {
  auto m = router.match(method, path);
  if (m.outcome != RouteMatch::Outcome::found) return "none";
  Request req;
  return m.route->handler(req).body;
}

}  // namespace

TEST_CASE("router: literal paths, parameters, and precedence", "[router]") {
  Router router;
  router.add("GET", "/v1/jobs", named("list"));
  router.add("POST", "/v1/jobs", named("create"));
  router.add("GET", "/v1/jobs/{id}", named("get"));
  router.add("GET", "/v1/jobs/export", named("export"));
  router.add("GET", "/v1/jobs/{id}/results", named("results"));

  CHECK(run(router, "GET", "/v1/jobs") == "list");
  CHECK(run(router, "POST", "/v1/jobs") == "create");
  CHECK(run(router, "GET", "/v1/jobs/export") == "export");
  CHECK(run(router, "GET", "/v1/jobs/abc") == "get");
  CHECK(run(router, "GET", "/v1/jobs/abc/results") == "results");
  CHECK(run(router, "GET", "/v1/jobs/abc/other") == "none");
  CHECK(run(router, "GET", "/v1/jobs/") == "none");  // an empty id is not an id

  auto m = router.match("GET", "/v1/jobs/a%2Fb/results");
  REQUIRE(m.outcome == RouteMatch::Outcome::found);
  REQUIRE(m.params.size() == 1);
  CHECK(m.params[0].first == "id");
  CHECK(m.params[0].second == "a/b");
}

TEST_CASE("router: 404, 405 with Allow, HEAD as GET, bad escapes", "[router]") {
  Router router;
  router.add("GET", "/healthz", named("health"));
  router.add("POST", "/v1/jobs", named("create"));

  CHECK(router.match("GET", "/nope").outcome == RouteMatch::Outcome::not_found);
  auto m = router.match("DELETE", "/healthz");
  CHECK(m.outcome == RouteMatch::Outcome::method_not_allowed);
  CHECK(m.allow == "GET, HEAD");
  CHECK(router.match("GET", "/v1/jobs").allow == "POST");
  CHECK(run(router, "HEAD", "/healthz") == "health");
  CHECK(router.match("GET", "/v1/%zz").outcome == RouteMatch::Outcome::bad_path);
}

TEST_CASE("router: rejects malformed and duplicate patterns", "[router]") {
  Router router;
  router.add("GET", "/a/{id}", named("a"));
  CHECK_THROWS_AS(router.add("GET", "/a/{id}", named("again")), std::invalid_argument);
  CHECK_THROWS_AS(router.add("GET", "no-slash", named("x")), std::invalid_argument);
  CHECK_THROWS_AS(router.add("GET", "/a/{oops", named("x")), std::invalid_argument);
}

TEST_CASE("request targets split into raw path and decoded query", "[request]") {
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  REQUIRE(parse_target("/v1/vendors/scores?window=7d&domain=medical%20notes&flag", path, query));
  CHECK(path == "/v1/vendors/scores");
  REQUIRE(query.size() == 3);
  CHECK(query[0] == std::pair<std::string, std::string>{"window", "7d"});
  CHECK(query[1] == std::pair<std::string, std::string>{"domain", "medical notes"});
  CHECK(query[2] == std::pair<std::string, std::string>{"flag", ""});
  CHECK_FALSE(parse_target("http://example.com/", path, query));
  CHECK_FALSE(parse_target("/a%zz", path, query));
  CHECK_FALSE(parse_target("/a%00b", path, query));
  CHECK_FALSE(parse_target("/a?x=%4", path, query));
}

TEST_CASE("problem responses follow RFC 9457", "[problem]") {
  auto r = problem(422, "validation-error", "Invalid job", "2 problems",
                   {{"/items/0/id", "must be unique"}, {"/" + json_pointer_escape("a/b~c"), "bad"}});
  CHECK(r.status == 422);
  CHECK(r.headers.get("content-type") == std::optional<std::string_view>("application/problem+json"));
  auto body = nlohmann::json::parse(r.body);
  CHECK(body["type"] == "/problems/validation-error");
  CHECK(body["title"] == "Invalid job");
  CHECK(body["status"] == 422);
  CHECK(body["detail"] == "2 problems");
  REQUIRE(body["errors"].size() == 2);
  CHECK(body["errors"][0]["pointer"] == "/items/0/id");
  CHECK(body["errors"][1]["pointer"] == "/a~1b~0c");
}

TEST_CASE("router: a route may carry its own body limit", "[router]") {
  Router router;
  router.add("GET", "/healthz", named("health"), Execution::io_thread);
  router.add("POST", "/v1/jobs", named("create"), RouteOptions{Execution::worker, 256u * 1024 * 1024, {}});
  router.add("POST", "/v1/jobs/{id}/start", named("start"));

  auto upload = router.match("POST", "/v1/jobs");
  REQUIRE(upload.outcome == RouteMatch::Outcome::found);
  CHECK(Router::body_limit(upload.route, 8 * 1024 * 1024) == 256u * 1024 * 1024);
  CHECK(upload.route->execution == Execution::worker);
  auto start = router.match("POST", "/v1/jobs/abc/start");
  REQUIRE(start.outcome == RouteMatch::Outcome::found);
  CHECK(Router::body_limit(start.route, 8 * 1024 * 1024) == 8u * 1024 * 1024);
  CHECK(router.match("GET", "/healthz").route->execution == Execution::io_thread);
  // No route (404, 405): the server's limit.
  CHECK(Router::body_limit(nullptr, 1234) == 1234);
  CHECK_THROWS_AS(router.add("POST", "/zero", named("z"), RouteOptions{Execution::worker, 0, {}}), std::invalid_argument);
}
