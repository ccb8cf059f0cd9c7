// The OpenAPI document (docs/openapi.yaml, served as /openapi.json) against what the router really
// serves: every route is documented and every documented operation is served, with the same path
// parameters. (The linter, @redocly/cli, runs as its own test: tests/CMakeLists.txt.)
#include <set>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/dataset_fixture.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using json = nlohmann::json;

TEST_CASE("openapi: the document and the router list the same operations", "[.db][openapi]") {
  ApiFixture api(kTwoVendors);
  auto served = http_request(api.port(), "GET", "/openapi.json");
  REQUIRE(served.status == 200);
  CHECK(served.header("Content-Type") == "application/json");
  REQUIRE(served.header("ETag"));
  CHECK(http_request(api.port(), "GET", "/openapi.json", "", {{"If-None-Match", *served.header("ETag")}}).status == 304);
  const auto document = json::parse(served.body);
  CHECK(document["openapi"] == "3.1.0");
  CHECK(document["info"]["version"] == "1");  // quoted in the YAML: stays a string

  std::set<std::string> routed, documented;
  for (const auto& route : api.router().routes()) routed.insert(route.method + " " + route.pattern);
  const std::set<std::string> methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"};
  for (const auto& [path, item] : document["paths"].items())
    for (const auto& [method, operation] : item.items()) {
      if (!methods.count(method)) continue;
      std::string upper = method;
      for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      documented.insert(upper + " " + path);
      INFO(upper << " " << path);
      CHECK(operation.contains("operationId"));
      CHECK(operation.contains("responses"));
    }
  for (const auto& r : routed) {
    INFO("served but not documented: " << r);
    CHECK(documented.count(r) == 1);
  }
  for (const auto& d : documented) {
    INFO("documented but not served: " << d);
    CHECK(routed.count(d) == 1);
  }
  CHECK(routed.size() > 30);
}
