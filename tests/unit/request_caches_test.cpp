// The two caches on the request path: verified API keys (api/auth) and computed score views
// (api/view_cache). Unit tests use a manual steady clock; the [.db] ones check require_role
// against a real PostgreSQL.
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "api/auth.hpp"
#include "api/view_cache.hpp"
#include "auth/api_key.hpp"
#include "config/config.hpp"
#include "db/migrations.hpp"
#include "db/team_store.hpp"
#include "support/scratch_db.hpp"

using namespace labelbroker;
using namespace std::chrono_literals;

namespace {

// A steady clock that moves only when told, shared with the cache under test.
class TestClock {
 public:
  std::chrono::steady_clock::time_point now() const { return start_ + std::chrono::nanoseconds(offset_.load()); }
  void advance(std::chrono::nanoseconds by) { offset_ += by.count(); }
  std::function<std::chrono::steady_clock::time_point()> fn() {
    return [this] { return now(); };
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<std::int64_t> offset_{0};
};

db::KeyRecord key_record(std::int64_t id, const std::string& secret_hash, const std::string& role = "viewer") {
  return db::KeyRecord{id, 7, "team-a", role, secret_hash, "", std::nullopt, std::nullopt};
}

}  // namespace

TEST_CASE("key cache: a hit asks the database nothing, and a wrong secret is still refused", "[key-cache]") {
  TestClock clock;
  api::KeyCache cache(5000ms, api::KeyCache::kDefaultMaxEntries, clock.fn());
  const auto key = auth::generate_api_key();
  int loads = 0;
  auto load = [&](const std::string& prefix) -> std::optional<db::KeyRecord> {
    ++loads;
    CHECK(prefix == key.prefix);
    return key_record(1, key.secret_hash);
  };
  auto first = cache.authenticate(key.prefix, key.secret_hash, load);
  REQUIRE(first);
  CHECK(first->key_id == 1);
  clock.advance(4900ms);
  auto second = cache.authenticate(key.prefix, key.secret_hash, load);
  CHECK(second == first);
  CHECK(loads == 1);

  CHECK_FALSE(cache.authenticate(key.prefix, auth::hash_secret("wrong"), load));
  CHECK(loads == 1);  // refused from the cached hash
  CHECK(cache.authenticate(key.prefix, key.secret_hash, load) == first);
}

TEST_CASE("key cache: revocation and role changes take effect after the ttl", "[key-cache]") {
  TestClock clock;
  api::KeyCache cache(1000ms, api::KeyCache::kDefaultMaxEntries, clock.fn());
  const auto key = auth::generate_api_key();
  std::optional<db::KeyRecord> stored = key_record(1, key.secret_hash, "viewer");
  int loads = 0;
  auto load = [&](const std::string&) {
    ++loads;
    return stored;
  };
  REQUIRE(cache.authenticate(key.prefix, key.secret_hash, load)->role == "viewer");
  stored->role = "admin";
  clock.advance(999ms);
  CHECK(cache.authenticate(key.prefix, key.secret_hash, load)->role == "viewer");
  clock.advance(1ms);
  CHECK(cache.authenticate(key.prefix, key.secret_hash, load)->role == "admin");
  CHECK(loads == 2);

  stored.reset();  // revoked
  CHECK(cache.authenticate(key.prefix, key.secret_hash, load));
  clock.advance(1000ms);
  CHECK_FALSE(cache.authenticate(key.prefix, key.secret_hash, load));
  CHECK(cache.size() == 0);
  CHECK_FALSE(cache.authenticate(key.prefix, key.secret_hash, load));
  CHECK(loads == 4);  // a revoked key is not remembered either
}

TEST_CASE("key cache: unknown keys and wrong secrets are not cached, so a new key works at once",
          "[key-cache]") {
  TestClock clock;
  api::KeyCache cache(5000ms, api::KeyCache::kDefaultMaxEntries, clock.fn());
  const auto key = auth::generate_api_key();
  std::optional<db::KeyRecord> stored;
  int loads = 0;
  auto load = [&](const std::string&) {
    ++loads;
    return stored;
  };
  CHECK_FALSE(cache.authenticate(key.prefix, key.secret_hash, load));
  stored = key_record(3, key.secret_hash);  // created just now
  CHECK_FALSE(cache.authenticate(key.prefix, auth::hash_secret("wrong"), load));
  CHECK(cache.size() == 0);
  CHECK(cache.authenticate(key.prefix, key.secret_hash, load));
  CHECK(loads == 3);
  CHECK(cache.size() == 1);
}

TEST_CASE("key cache: ttl 0 asks the database every time, errors propagate and cache nothing", "[key-cache]") {
  TestClock clock;
  api::KeyCache cache(0ms, api::KeyCache::kDefaultMaxEntries, clock.fn());
  const auto key = auth::generate_api_key();
  int loads = 0;
  auto load = [&](const std::string&) -> std::optional<db::KeyRecord> {
    ++loads;
    return key_record(1, key.secret_hash);
  };
  for (int i = 0; i < 3; ++i) CHECK(cache.authenticate(key.prefix, key.secret_hash, load));
  CHECK(loads == 3);
  CHECK(cache.size() == 0);

  cache.set_ttl(1000ms);
  auto failing = [](const std::string&) -> std::optional<db::KeyRecord> { throw std::runtime_error("db down"); };
  CHECK_THROWS_WITH(cache.authenticate(key.prefix, key.secret_hash, failing), "db down");
  CHECK(cache.size() == 0);
  CHECK(cache.authenticate(key.prefix, key.secret_hash, load));
  CHECK(cache.size() == 1);
  cache.set_ttl(0ms);
  CHECK(cache.size() == 0);

  CHECK(api::shared_key_cache().ttl() == 0ms);  // until the service configures it
}

TEST_CASE("key cache: bounded, and safe to share between threads", "[key-cache]") {
  TestClock clock;
  api::KeyCache cache(5000ms, 4, clock.fn());
  std::vector<auth::GeneratedKey> keys;
  for (int i = 0; i < 10; ++i) keys.push_back(auth::generate_api_key());
  std::atomic<int> loads{0};
  auto load = [&](const std::string& prefix) -> std::optional<db::KeyRecord> {
    ++loads;
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (keys[i].prefix == prefix) return key_record(static_cast<std::int64_t>(i), keys[i].secret_hash);
    return std::nullopt;
  };
  for (const auto& k : keys) {
    CHECK(cache.authenticate(k.prefix, k.secret_hash, load));
    CHECK(cache.size() <= 4);
  }

  cache.clear();
  for (std::size_t i = 0; i < 3; ++i) CHECK(cache.authenticate(keys[i].prefix, keys[i].secret_hash, load));
  loads = 0;
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const auto& k = keys[static_cast<std::size_t>((t + i) % 3)];
        if (!cache.authenticate(k.prefix, k.secret_hash, load)) ++refused;
        if (i % 100 == 0) cache.claim_touch(k.prefix);
      }
    });
  for (auto& t : threads) t.join();
  CHECK(refused == 0);
  CHECK(loads == 0);
}

TEST_CASE("key cache: a key's use is recorded at most once a minute", "[key-cache]") {
  TestClock clock;
  api::KeyCache cache(0ms, api::KeyCache::kDefaultMaxEntries, clock.fn());
  CHECK(cache.claim_touch("aaaaaaaaaaaa"));
  CHECK_FALSE(cache.claim_touch("aaaaaaaaaaaa"));
  CHECK(cache.claim_touch("bbbbbbbbbbbb"));
  clock.advance(59s);
  CHECK_FALSE(cache.claim_touch("aaaaaaaaaaaa"));
  clock.advance(1s);
  CHECK(cache.claim_touch("aaaaaaaaaaaa"));
  CHECK_FALSE(cache.claim_touch("aaaaaaaaaaaa"));
}

TEST_CASE("view cache: concurrent requests for a missing entry compute it once", "[view-cache]") {
  api::ViewCache cache(1000ms);
  std::atomic<int> computes{0};
  std::atomic<int> started{0};
  constexpr int kThreads = 8;
  std::vector<std::string> bodies(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      ++started;
      bodies[static_cast<std::size_t>(t)] = cache.get("team 1 /v1/vendors/scores", [&] {
        ++computes;
        // Long enough for every thread to arrive while this computation is in flight.
        while (started < kThreads) std::this_thread::yield();
        std::this_thread::sleep_for(200ms);
        return std::string(R"({"n":1})");
      })->body;
    });
  for (auto& t : threads) t.join();
  CHECK(computes == 1);
  for (const auto& body : bodies) CHECK(body == R"({"n":1})");
}

TEST_CASE("view cache: an expired entry is recomputed once while the others get the stale one", "[view-cache]") {
  TestClock clock;
  api::ViewCache cache(1000ms, 1000, clock.fn());
  std::atomic<int> computes{0};
  auto first = cache.get("k", [&] {
    ++computes;
    return std::string(R"({"v":1})");
  });
  clock.advance(1500ms);

  std::atomic<bool> release{false};
  std::atomic<bool> computing{false};
  std::thread refresher([&] {
    auto fresh = cache.get("k", [&] {
      ++computes;
      computing = true;
      while (!release) std::this_thread::yield();
      return std::string(R"({"v":2})");
    });
    CHECK(fresh->body == R"({"v":2})");
  });
  while (!computing) std::this_thread::yield();
  std::vector<std::thread> readers;
  std::atomic<int> stale{0};
  for (int t = 0; t < 8; ++t)
    readers.emplace_back([&] {
      auto entry = cache.get("k", [&] {
        ++computes;
        return std::string(R"({"v":3})");
      });
      if (entry == first) ++stale;
    });
  for (auto& t : readers) t.join();  // returned without waiting for the refresh
  CHECK(stale == 8);
  release = true;
  refresher.join();
  CHECK(computes == 2);
  CHECK(cache.get("k", [] { return std::string("{}"); })->body == R"({"v":2})");
}

TEST_CASE("view cache: an entry is fresh from when its computation finished", "[view-cache]") {
  TestClock clock;
  api::ViewCache cache(1000ms, 1000, clock.fn());
  int computes = 0;
  auto slow = [&] {
    ++computes;
    clock.advance(2500ms);  // a query slower than the ttl
    return std::string(R"({"v":1})");
  };
  cache.get("k", slow);
  cache.get("k", slow);
  clock.advance(999ms);
  cache.get("k", slow);
  CHECK(computes == 1);
  clock.advance(1ms);
  cache.get("k", slow);
  CHECK(computes == 2);
}

TEST_CASE("view cache: a failed computation reaches every caller waiting on it and is retried later",
          "[view-cache]") {
  api::ViewCache cache(1000ms);
  std::atomic<int> computes{0};
  std::atomic<int> started{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      ++started;
      try {
        cache.get("k", [&]() -> std::string {
          ++computes;
          while (started < 4) std::this_thread::yield();
          std::this_thread::sleep_for(200ms);
          throw std::runtime_error("pool exhausted");
        });
      } catch (const std::runtime_error& e) {
        if (std::string(e.what()) == "pool exhausted") ++failed;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(computes == 1);
  CHECK(failed == 4);
  CHECK(cache.get("k", [] { return std::string(R"({"ok":true})"); })->body == R"({"ok":true})");
}

TEST_CASE("view cache: ttl 0 computes every time, the number of keys is bounded", "[view-cache]") {
  api::ViewCache uncached(0ms);
  int computes = 0;
  for (int i = 0; i < 3; ++i)
    uncached.get("k", [&] {
      ++computes;
      return std::string("{}");
    });
  CHECK(computes == 3);
  CHECK(uncached.size() == 0);

  api::ViewCache bounded(60000ms, 3);
  for (int i = 0; i < 20; ++i) {
    bounded.get("k" + std::to_string(i), [] { return std::string("{}"); });
    CHECK(bounded.size() <= 4);
  }
}

TEST_CASE("view cache: the ETag stays the same when only the last digits of a double move", "[view-cache]") {
  CHECK(api::round_json_numbers(R"({"a":0.30000000000000004,"b":[0.1234567891234,12,-3],"c":"0.30000000000000004"})") ==
        R"({"a":0.3,"b":[0.123456789,12,-3],"c":"0.30000000000000004"})");
  CHECK(api::round_json_numbers(R"({"kappa":1e-17,"hhi":3333.3333333333335,"p50":1.0})") ==
        R"({"hhi":3333.33333,"kappa":0.0,"p50":1.0})");
  CHECK(api::round_json_numbers("not json") == "not json");

  api::ViewCache cache(0ms);
  auto a = cache.get("k", [] { return std::string(R"({"share":0.33333333333333331,"hhi":3333.3333333333326})"); });
  auto b = cache.get("k", [] { return std::string(R"({"share":0.33333333333333337,"hhi":3333.3333333333335})"); });
  auto c = cache.get("k", [] { return std::string(R"({"share":0.34,"hhi":3333.3333333333335})"); });
  CHECK(a->etag == b->etag);
  CHECK(a->body == b->body);  // the body is what the ETag names, byte for byte
  CHECK(a->etag != c->etag);
  CHECK(a->etag == api::body_etag(a->body));
  CHECK(a->etag.size() == 34);
  CHECK(a->etag.front() == '"');
}

TEST_CASE("config: auth.key_cache_ms", "[key-cache][config]") {
  const auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  CHECK(config::parse_config("{}", "t", env).auth.key_cache == 5000ms);
  CHECK(config::parse_config(R"({"auth": {"key_cache_ms": 0}})", "t", env).auth.key_cache == 0ms);
  CHECK_THROWS_WITH(config::parse_config(R"({"auth": {"key_cache_ms": -1}})", "t", env),
                    Catch::Contains("$.auth.key_cache_ms"));
  CHECK_THROWS_WITH(config::parse_config(R"({"auth": {"key_ttl": 1}})", "t", env), Catch::Contains("$.auth.key_ttl"));
  CHECK(config::load_config(std::string(LABELBROKER_SOURCE_DIR) + "/config/labelbroker.json", env).auth.key_cache ==
        5000ms);
}

namespace {

struct KeyedDatabase {
  testing::ScratchDatabase scratch;
  std::string viewer;  // plaintext keys
  std::string admin;

  KeyedDatabase() {
    pqxx::connection c(scratch.url());
    db::apply_migrations(c, db::builtin_migrations());
    auto [team, created] = db::ensure_team(c, "team-a");
    auto v = auth::generate_api_key();
    db::insert_api_key(c, team.id, v.prefix, v.secret_hash, "viewer");
    viewer = v.plaintext;
    auto a = auth::generate_api_key();
    db::insert_api_key(c, team.id, a.prefix, a.secret_hash, "admin");
    admin = a.plaintext;
  }

  void sql(const std::string& statement, const std::string& key) {
    pqxx::connection c(scratch.url());
    pqxx::nontransaction(c).exec_params0(statement, auth::parse_api_key(key)->prefix);
  }
  bool used(const std::string& key) {
    pqxx::connection c(scratch.url());
    return pqxx::nontransaction(c)
        .exec_params1("SELECT last_used_at IS NOT NULL FROM api_keys WHERE prefix = $1", auth::parse_api_key(key)->prefix)[0]
        .as<bool>();
  }
};

int call(const http::Handler& handler, const std::string& key) {
  http::Request request;
  request.method = "GET";
  request.target = request.path = "/v1/test";
  request.headers.add("Authorization", "Bearer " + key);
  return handler(request).status;
}

db::PoolOptions pool_options(const std::string& url) {
  db::PoolOptions o;
  o.url = url;
  o.size = 2;
  return o;
}

}  // namespace

TEST_CASE("key cache: require_role serves cached keys without the database until the ttl passes",
          "[.db][key-cache]") {
  KeyedDatabase data;
  db::ConnectionPool pool(pool_options(data.scratch.url()));
  TestClock clock;
  api::KeyCache keys(5000ms, api::KeyCache::kDefaultMaxEntries, clock.fn());
  std::string team;
  const auto ok = [&](http::Request&, const api::Caller& caller) {
    team = caller.team;
    return http::Response::json(200, "{}");
  };
  const auto viewer_route = api::require_role(pool, keys, auth::Role::viewer, ok);
  const auto admin_route = api::require_role(pool, keys, auth::Role::admin, ok);

  CHECK(call(viewer_route, data.viewer) == 200);
  CHECK(team == "team-a");
  CHECK(data.used(data.viewer));
  CHECK(call(admin_route, data.viewer) == 403);
  std::string wrong = data.viewer;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  CHECK(call(viewer_route, wrong) == 401);  // the prefix is cached, the secret still checked

  // Within the ttl the database is not asked: neither a role change nor a revocation is seen.
  data.sql("UPDATE api_keys SET role = 'admin' WHERE prefix = $1", data.viewer);
  clock.advance(4000ms);
  CHECK(call(admin_route, data.viewer) == 403);
  data.sql("UPDATE api_keys SET revoked_at = now(), last_used_at = NULL WHERE prefix = $1", data.admin);
  CHECK(call(admin_route, data.admin) == 401);  // never cached: asked the database
  CHECK_FALSE(data.used(data.admin));

  data.sql("UPDATE api_keys SET last_used_at = NULL WHERE prefix = $1", data.viewer);
  data.sql("UPDATE api_keys SET revoked_at = now() WHERE prefix = $1", data.viewer);
  CHECK(call(viewer_route, data.viewer) == 200);
  CHECK_FALSE(data.used(data.viewer));  // used within the minute: no write either
  clock.advance(1000ms);
  CHECK(call(viewer_route, data.viewer) == 401);
  CHECK(call(viewer_route, data.viewer) == 401);
}

TEST_CASE("key cache: role changes reach require_role after the ttl, and use is recorded once a minute",
          "[.db][key-cache]") {
  KeyedDatabase data;
  db::ConnectionPool pool(pool_options(data.scratch.url()));
  TestClock clock;
  api::KeyCache keys(1000ms, api::KeyCache::kDefaultMaxEntries, clock.fn());
  const auto admin_route = api::require_role(
      pool, keys, auth::Role::admin, [](http::Request&, const api::Caller&) { return http::Response::json(200, "{}"); });

  CHECK(call(admin_route, data.viewer) == 403);
  CHECK_FALSE(data.used(data.viewer));  // a refused key is not recorded as used
  data.sql("UPDATE api_keys SET role = 'admin' WHERE prefix = $1", data.viewer);
  clock.advance(1000ms);
  CHECK(call(admin_route, data.viewer) == 200);
  CHECK(data.used(data.viewer));

  data.sql("UPDATE api_keys SET last_used_at = NULL WHERE prefix = $1", data.viewer);
  clock.advance(30s);
  CHECK(call(admin_route, data.viewer) == 200);
  CHECK_FALSE(data.used(data.viewer));
  clock.advance(30s);
  CHECK(call(admin_route, data.viewer) == 200);
  CHECK(data.used(data.viewer));

  // ttl 0: a revocation is seen by the next request.
  keys.set_ttl(0ms);
  CHECK(call(admin_route, data.viewer) == 200);
  data.sql("UPDATE api_keys SET revoked_at = now() WHERE prefix = $1", data.viewer);
  CHECK(call(admin_route, data.viewer) == 401);
}
