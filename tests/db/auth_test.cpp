// API-key authentication against a real PostgreSQL, through the real HTTP server.
#include "api/auth.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "auth/api_key.hpp"
#include "config/config.hpp"
#include "db/migrations.hpp"
#include "db/team_store.hpp"
#include "support/api_keys.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/scratch_db.hpp"
#include "support/test_server.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;

namespace {

std::vector<std::pair<std::string, std::string>> bearer(const std::string& key) {
  return {{"Authorization", "Bearer " + key}};
}

}  // namespace

TEST_CASE("auth: /v1 needs a valid key, with the right role", "[.db][auth]") {
  ScratchDatabase scratch;
  {
    pqxx::connection c(scratch.url());
    db::apply_migrations(c, db::builtin_migrations());
  }
  const auto viewer = make_key(scratch.url(), "team-a", auth::Role::viewer);
  const auto admin = make_key(scratch.url(), "team-a", auth::Role::admin);

  TestServer ts(test_server_options(), scratch.url());
  db::PoolOptions pool_options;
  pool_options.url = scratch.url();
  db::ConnectionPool pool(pool_options);
  ts.router().add("GET", "/v1/admin-only",
                  api::require_role(pool, auth::Role::admin, [](http::Request&, const api::Caller& caller) {
                    return http::Response::json(200, nlohmann::json{{"team", caller.team}}.dump());
                  }));
  ts.start();

  auto missing = http_request(ts.port(), "GET", "/v1/version");
  CHECK(missing.status == 401);
  CHECK(missing.header("WWW-Authenticate") == "Bearer realm=\"labelbroker\"");
  CHECK(nlohmann::json::parse(missing.body)["type"] == "/problems/unauthorized");
  CHECK(http_request(ts.port(), "GET", "/v1/version", "", {{"Authorization", "Basic abc"}}).status == 401);
  CHECK(http_request(ts.port(), "GET", "/v1/version", "", bearer("not-a-key")).status == 401);
  CHECK(http_request(ts.port(), "GET", "/v1/version", "", bearer(auth::generate_api_key().plaintext)).status == 401);
  std::string wrong_secret = viewer;
  wrong_secret.back() = wrong_secret.back() == '0' ? '1' : '0';
  const auto wrong = http_request(ts.port(), "GET", "/v1/version", "", bearer(wrong_secret));
  CHECK(wrong.status == 401);
  CHECK(wrong.body == missing.body);  // nothing to learn from which check failed

  CHECK(http_request(ts.port(), "GET", "/v1/version", "", bearer(viewer)).status == 200);
  CHECK(http_request(ts.port(), "GET", "/v1/vendors", "", bearer(viewer)).status == 200);
  auto forbidden = http_request(ts.port(), "GET", "/v1/admin-only", "", bearer(viewer));
  CHECK(forbidden.status == 403);
  CHECK(nlohmann::json::parse(forbidden.body)["detail"] == "this API key has the viewer role; admin is needed");
  auto allowed = http_request(ts.port(), "GET", "/v1/admin-only", "", bearer(admin));
  CHECK(allowed.status == 200);
  CHECK(nlohmann::json::parse(allowed.body)["team"] == "team-a");
  CHECK(http_request(ts.port(), "GET", "/healthz").status == 200);  // health stays open

  pqxx::connection c(scratch.url());
  CHECK(pqxx::nontransaction(c).exec1("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL")[0].as<int>() ==
        2);
  pqxx::nontransaction(c).exec_params0("UPDATE api_keys SET revoked_at = now() WHERE prefix = $1",
                                       auth::parse_api_key(viewer)->prefix);
  CHECK(http_request(ts.port(), "GET", "/v1/version", "", bearer(viewer)).status == 401);  // revoked at once
  // Only hashes are stored.
  CHECK(pqxx::nontransaction(c)
            .exec_params1("SELECT count(*) FROM api_keys WHERE secret_hash = $1", auth::parse_api_key(admin)->secret)[0]
            .as<int>() == 0);
}

TEST_CASE("labelbroker admin creates teams and keys", "[.db][auth][e2e]") {
  ScratchDatabase scratch;
  const std::string binary = LABELBROKER_BINARY;
  const std::map<std::string, std::string> env = {{"LABELBROKER_DATABASE_URL", scratch.url()},
                                                  {"LABELBROKER_CONFIG", ""}};
  auto team = run_process({binary, "admin", "create-team", "ml-team"}, env);
  INFO(team.err);
  CHECK(team.exit_code == 0);
  CHECK(team.out == "created team ml-team\n");
  auto again = run_process({binary, "admin", "create-team", "ml-team"}, env);
  CHECK(again.exit_code == 0);
  CHECK(again.out == "team already exists: ml-team\n");

  auto key = run_process({binary, "admin", "create-key", "--team", "ml-team", "--role", "submitter"}, env);
  CHECK(key.exit_code == 0);
  REQUIRE(key.out.size() == 58);  // the key and a newline: nothing else on stdout, for scripts
  CHECK(auth::parse_api_key(key.out.substr(0, 57)).has_value());
  CHECK(key.err.find("shown only now") != std::string::npos);

  CHECK(run_process({binary, "admin", "create-key", "--team", "nobody", "--role", "viewer"}, env).exit_code == 1);
  CHECK(run_process({binary, "admin", "create-key", "--team", "ml-team", "--role", "root"}, env).exit_code == 2);
  CHECK(run_process({binary, "admin", "create-team", "Bad Name"}, env).exit_code == 2);
  CHECK(run_process({binary, "admin", "frobnicate"}, env).exit_code == 2);
}

TEST_CASE("GET /v1/vendors lists configured vendors with kind and capabilities", "[.db][vendors]") {
  ScratchDatabase scratch;
  {
    pqxx::connection c(scratch.url());
    db::apply_migrations(c, db::builtin_migrations());
  }
  const auto viewer = make_key(scratch.url(), "team-v", auth::Role::viewer);
  vendors::HttpRuntime runtime;
  const auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto cfg = config::parse_config(R"({"vendors": [{"id": "scale-small", "kind": "scale",
      "base_url": "http://127.0.0.1:9/scale-small/v1", "api_key": "k", "callback_secret": "0123456789abcdef",
      "capabilities": {"task_types": ["classification"], "domains": ["general", "legal"], "expertise": ["general"]},
      "prices": {"classification": "0.05"}}]})",
                                  "test.json", env);
  vendors::VendorRegistry registry;
  vendors::register_builtin_vendors(registry);
  TestServer ts(test_server_options(), scratch.url());
  ts.vendors() =
      vendors::VendorSet(registry, cfg.vendors, {runtime, "http://127.0.0.1/v1/callbacks", "test.json", env});
  ts.start();
  CHECK(http_request(ts.port(), "GET", "/v1/vendors").status == 401);
  auto r = http_request(ts.port(), "GET", "/v1/vendors", "", bearer(viewer));
  REQUIRE(r.status == 200);
  auto body = nlohmann::json::parse(r.body);
  REQUIRE(body["vendors"].size() == 1);
  const auto& v = body["vendors"][0];
  CHECK(v["id"] == "scale-small");
  CHECK(v["kind"] == "scale");
  CHECK(v["capabilities"]["task_types"] == nlohmann::json::array({"classification"}));
  CHECK(v["capabilities"]["domains"] == nlohmann::json::array({"general", "legal"}));
  CHECK(v["health"]["base_url"] == "http://127.0.0.1:9/scale-small/v1");
  CHECK(r.body.find("0123456789abcdef") == std::string::npos);  // secrets never leave the broker
}
