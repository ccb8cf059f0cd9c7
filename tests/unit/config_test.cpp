#include "config/config.hpp"

#include <map>

#include <catch2/catch.hpp>

using labelbroker::config::ConfigError;
using labelbroker::config::EnvLookup;
using labelbroker::config::parse_config;

namespace {

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string error_of(const std::string& text, std::map<std::string, std::string> env = {}) {
  try {
    parse_config(text, "test.json", fake_env(std::move(env)));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("config: an empty object gives the documented defaults", "[config]") {
  auto cfg = parse_config("{}", "test.json", fake_env({}));
  CHECK(cfg.listen.to_string() == "127.0.0.1:8080");
  CHECK(cfg.database.url.reveal() == "postgresql://labelbroker@127.0.0.1:55432/labelbroker");
  CHECK(cfg.http.body_limit_bytes == 8u * 1024 * 1024);
  CHECK(cfg.http.io_threads == 0);
  CHECK(cfg.log.level == "info");
}

TEST_CASE("config: a full file with comments is read", "[config]") {
  auto cfg = parse_config(R"({
    // where clients connect
    "listen": "0.0.0.0:9000",
    "database": {"url": "postgresql://u:p@db/x", "pool_size": 3, "statement_timeout_ms": 250},
    /* block comments too */
    "http": {"io_threads": 2, "body_limit_bytes": 1024, "header_timeout_ms": 500, "drain_delay_ms": 10},
    "log": {"level": "warn", "access_log": false}
  })",
                          "test.json", fake_env({}));
  CHECK(cfg.listen.host == "0.0.0.0");
  CHECK(cfg.listen.port == 9000);
  CHECK(cfg.database.pool_size == 3);
  CHECK(cfg.database.statement_timeout == std::chrono::milliseconds(250));
  CHECK(cfg.database.url.origin() == "config");
  CHECK(cfg.http.io_threads == 2);
  CHECK(cfg.http.body_limit_bytes == 1024);
  CHECK(cfg.http.header_timeout == std::chrono::milliseconds(500));
  CHECK(cfg.http.drain_delay == std::chrono::milliseconds(10));
  CHECK(cfg.log.level == "warn");
  CHECK_FALSE(cfg.log.access_log);
}

TEST_CASE("config: errors name the JSON path and the reason on one line", "[config]") {
  CHECK(error_of(R"({"http": {"io_threads": "four"}})") ==
        "test.json: $.http.io_threads: expected an integer, got string");
  CHECK(error_of(R"({"http": {"bogus": 1}})") == "test.json: $.http.bogus: unknown key");
  CHECK(error_of(R"({"vendorz": []})") == "test.json: $.vendorz: unknown key");
  CHECK(error_of(R"({"database": {"pool_size": 0}})") == "test.json: $.database.pool_size: must be between 1 and 1000");
  CHECK(error_of(R"({"database": {"pool_size": 2.5}})") ==
        "test.json: $.database.pool_size: expected an integer, got number");
  CHECK(error_of(R"({"log": {"access_log": "yes"}})") == "test.json: $.log.access_log: expected a boolean, got string");
  CHECK(error_of(R"({"log": {"level": "loud"}})") == "test.json: $.log.level: must be one of debug, info, warn, error");
  CHECK(error_of(R"({"http": []})") == "test.json: $.http: expected an object, got array");
  CHECK(error_of(R"([])") == "test.json: $: expected an object, got array");
  CHECK(error_of(R"({"listen": "localhost"})") == "test.json: $.listen: expected \"host:port\", got \"localhost\"");
  CHECK(error_of(R"({"listen": "127.0.0.1:70000"})").find("port must be a number from 0 to 65535") !=
        std::string::npos);

  const std::string syntax = error_of("{\n  \"listen\": ,\n}");
  CHECK(syntax.rfind("test.json: invalid JSON: ", 0) == 0);
  CHECK(syntax.find("line 2") != std::string::npos);
  CHECK(syntax.find('\n') == std::string::npos);
}

TEST_CASE("config: secrets come from the environment and never show up in errors", "[config]") {
  auto cfg = parse_config(R"({"database": {"url": {"env": "PGURL"}}})", "test.json",
                          fake_env({{"PGURL", "postgresql://u:hunter2@db/x"}}));
  CHECK(cfg.database.url.reveal() == "postgresql://u:hunter2@db/x");
  CHECK(cfg.database.url.origin() == "env:PGURL");

  CHECK(error_of(R"({"database": {"url": {"env": "MISSING"}}})") ==
        "test.json: $.database.url: environment variable MISSING is not set");
  CHECK(error_of(R"({"database": {"url": {"env": "X", "extra": 1}}})") ==
        "test.json: $.database.url.extra: unknown key");
  CHECK(error_of(R"({"database": {"url": 5}})") ==
        "test.json: $.database.url: expected a string or {\"env\": \"NAME\"}, got integer");
}

TEST_CASE("config: environment overrides win over the file", "[config]") {
  auto cfg = parse_config(
      R"({"listen": "127.0.0.1:1", "database": {"url": "postgresql://file/x"}})", "test.json",
      fake_env({{"LABELBROKER_LISTEN", "127.0.0.1:0"}, {"LABELBROKER_DATABASE_URL", "postgresql://env/y"}}));
  CHECK(cfg.listen.port == 0);
  CHECK(cfg.database.url.reveal() == "postgresql://env/y");
  CHECK(cfg.database.url.origin() == "env:LABELBROKER_DATABASE_URL");

  CHECK(error_of("{}", {{"LABELBROKER_LISTEN", "nonsense"}}) ==
        "LABELBROKER_LISTEN: expected \"host:port\", got \"nonsense\"");
}

TEST_CASE("config: a named file that does not exist is an error, an absent default is not", "[config]") {
  CHECK_THROWS_WITH(labelbroker::config::load_config(std::string("/nonexistent/lb.json"), fake_env({})),
                    "/nonexistent/lb.json: config file not found");
  CHECK_THROWS_WITH(
      labelbroker::config::load_config(std::nullopt, fake_env({{"LABELBROKER_CONFIG", "/nonexistent/x.json"}})),
      "/nonexistent/x.json: config file not found");
}

TEST_CASE("config: listen addresses", "[config]") {
  using labelbroker::config::parse_listen_address;
  auto v6 = parse_listen_address("[::1]:8081", "x");
  CHECK(v6.host == "::1");
  CHECK(v6.port == 8081);
  CHECK(v6.to_string() == "[::1]:8081");
  CHECK_THROWS_AS(parse_listen_address(":80", "x"), ConfigError);
  CHECK_THROWS_AS(parse_listen_address("h:", "x"), ConfigError);
  CHECK_THROWS_AS(parse_listen_address("h:8o", "x"), ConfigError);
}

TEST_CASE("config: the routing section is read and checked", "[config]") {
  auto cfg = parse_config(R"({"routing": {"max_share": 0.4, "domain_max_share": {"medical": 0.3},
                                          "team_max_share": {"research": 0.25}, "min_share": 0.1,
                                          "window_hours": 12, "evidence_half_life_hours": 0,
                                          "breaker_cooldown_ms": 1000, "rebalance": false},
                             "dispatch": {"plan_ahead_items": 200}})",
                          "test.json", fake_env({}));
  CHECK(cfg.routing.max_share == 0.4);
  CHECK(cfg.routing.domain_max_share.at("medical") == 0.3);
  CHECK(cfg.routing.team_max_share.at("research") == 0.25);
  CHECK(cfg.routing.min_share == 0.1);
  CHECK(cfg.routing.window == std::chrono::hours(12));
  CHECK(cfg.routing.evidence_half_life_hours == 0);
  CHECK(cfg.routing.breaker_cooldown == std::chrono::milliseconds(1000));
  CHECK_FALSE(cfg.routing.rebalance);
  CHECK(cfg.dispatch.plan_ahead_items == 200);
  const auto defaults = parse_config("{}", "test.json", fake_env({}));
  CHECK(defaults.routing.max_share == 0.5);
  CHECK(defaults.routing.min_share == 0.05);
  CHECK(defaults.routing.rebalance);

  CHECK(error_of(R"({"routing": {"min_share": 0.3, "max_share": 0.2}})") ==
        "test.json: $.routing.min_share: must not exceed max_share");
  CHECK(error_of(R"({"routing": {"domain_max_share": {"medical": 2}}})") ==
        "test.json: $.routing.domain_max_share.medical: must be between 0.01 and 1.0");
  CHECK(error_of(R"({"routing": {"max_shares": 0.5}})") == "test.json: $.routing.max_shares: unknown key");
  CHECK(error_of(R"({"routing": {"team_max_share": []}})") ==
        "test.json: $.routing.team_max_share: expected an object, got array");
}

TEST_CASE("config: the datasets section", "[config]") {
  CHECK_FALSE(parse_config("{}", "test.json", fake_env({})).datasets.cache_dir);
  CHECK(parse_config(R"({"datasets": {"cache_dir": ""}})", "test.json", fake_env({})).datasets.cache_dir == "");
  CHECK(parse_config(R"({"datasets": {"cache_dir": "/var/cache/lb"}})", "test.json", fake_env({})).datasets.cache_dir ==
        "/var/cache/lb");
  CHECK(error_of(R"({"datasets": {"cache": "x"}})") == "test.json: $.datasets.cache: unknown key");
}
