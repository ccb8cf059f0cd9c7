// Webhook delivery from the outbox (db/webhook_store, jobs/webhook_delivery) against a real
// PostgreSQL and a real HTTP receiver in the test process.
#include "jobs/webhook_delivery.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/crypto.hpp"
#include "db/migrations.hpp"
#include "db/pool.hpp"
#include "db/team_store.hpp"
#include "db/webhook_store.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "support/scratch_db.hpp"
#include "support/webhook_receiver.hpp"
#include "vendors/common/http_client.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using std::chrono::milliseconds;

namespace {

struct Team {
  std::int64_t id = 0;
  std::string secret;
};

struct DeliveryRow {
  int attempts = 0;
  bool delivered = false;
  bool failed = false;
  int last_status = 0;  // 0: NULL
  std::string last_error;
  bool due = false;  // next_attempt_at <= now()
};

// A migrated scratch database with helpers to insert the rows a delivery hangs off.
class WebhookDb {
 public:
  WebhookDb() {
    pqxx::connection c(scratch_.url());
    db::apply_migrations(c, db::builtin_migrations());
  }
  const std::string& url() const { return scratch_.url(); }

  db::PoolOptions pool_options() const {
    db::PoolOptions o;
    o.url = scratch_.url();
    o.size = 2;
    return o;
  }

  Team team(const std::string& name) {
    pqxx::connection c(url());
    auto [record, created] = db::ensure_team(c, name);
    auto secret = db::team_webhook_secret(c, record.id);
    REQUIRE(secret.has_value());
    return {record.id, *secret};
  }

  // A minimal finished job (every NOT NULL column without a default) and its outbox row.
  // give_up_in_seconds: the row's give_up_at relative to now (negative: already passed).
  std::int64_t delivery(const Team& team, const std::string& target, const std::string& body,
                        int give_up_in_seconds = 24 * 3600) {
    pqxx::connection c(url());
    pqxx::work tx(c);
    auto job = tx.exec_params1(
        "INSERT INTO jobs (team_id, name, status, task_type, domain, expertise, labels, redundancy, budget_micros, "
        "deadline, eligible_vendors, optimize, callback_url, finished_at) "
        "VALUES ($1, 'webhook-test', 'completed', 'classification', 'general', 'general', '[\"a\", \"b\"]', 1, 0, "
        "now() + interval '1 day', '{}', 'balanced', $2, now()) RETURNING id",
        team.id, target);
    auto row = tx.exec_params1(
        "INSERT INTO webhook_deliveries (job_id, team_id, url, event, body, give_up_at, created_at) "
        "VALUES ($1, $2, $3, 'job.completed', $4, now() + $5 * interval '1 second', now() - interval '1 minute') "
        "RETURNING id",
        job[0].as<std::string>(), team.id, target, body, give_up_in_seconds);
    tx.commit();
    return row[0].as<std::int64_t>();
  }

  DeliveryRow row(std::int64_t id) {
    pqxx::connection c(url());
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params1(
        "SELECT attempts, delivered_at IS NOT NULL, failed_at IS NOT NULL, COALESCE(last_status, 0), "
        "COALESCE(last_error, ''), next_attempt_at <= now() FROM webhook_deliveries WHERE id = $1",
        id);
    return {r[0].as<int>(),         r[1].as<bool>(), r[2].as<bool>(), r[3].as<int>(), r[4].as<std::string>(),
            r[5].as<bool>()};
  }

  void exec(const std::string& sql) {
    pqxx::connection c(url());
    pqxx::nontransaction(c).exec0(sql);
  }
  bool query_bool(const std::string& sql) {
    pqxx::connection c(url());
    return pqxx::nontransaction(c).exec1(sql)[0].as<bool>();
  }

 private:
  ScratchDatabase scratch_;
};

config::WebhookConfig fast_config() {
  config::WebhookConfig w;
  w.timeout = milliseconds(5000);
  w.backoff_initial = milliseconds(1);
  w.backoff_max = milliseconds(5);
  w.give_up_after = std::chrono::hours(24);
  return w;
}

std::string event_body(const std::string& job) {
  return nlohmann::json{{"type", "job.completed"}, {"job", {{"id", job}, {"status", "completed"}}}}.dump();
}

// run_once until the delivery is delivered or failed; the bound only stops a broken build.
void run_until_settled(WebhookDb& db, jobs::WebhookDelivery& delivery, std::int64_t id) {
  for (int i = 0; i < 2000; ++i) {
    auto r = db.row(id);
    if (r.delivered || r.failed) return;
    delivery.run_once();
    std::this_thread::sleep_for(milliseconds(5));  // lets the (few ms) backoff pass
  }
}

}  // namespace

TEST_CASE("webhooks: signature is sha256= and the HMAC-SHA256 of the body", "[webhooks]") {
  // RFC 4231 test case 2.
  CHECK(jobs::webhook_signature("Jefe", "what do ya want for nothing?") ==
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("webhooks: retry delay is full-jitter exponential, capped, and honours Retry-After", "[webhooks]") {
  config::WebhookConfig w;
  w.backoff_initial = milliseconds(100);
  w.backoff_max = milliseconds(1000);
  std::mt19937_64 rng(7);
  for (int attempts = 1; attempts <= 64; ++attempts) {
    const auto ceiling = std::min<std::int64_t>(1000, attempts >= 5 ? 1000 : 100LL << (attempts - 1));
    for (int i = 0; i < 50; ++i) {
      const auto d = jobs::webhook_retry_delay(w, attempts, std::nullopt, rng);
      INFO("attempts " << attempts);
      CHECK(d.count() >= 0);
      CHECK(d.count() <= ceiling);
    }
  }
  // Jitter: over many draws the delays after the 5th attempt are spread over the window.
  std::set<std::int64_t> seen;
  for (int i = 0; i < 200; ++i) seen.insert(jobs::webhook_retry_delay(w, 5, std::nullopt, rng).count());
  CHECK(seen.size() > 50);
  CHECK(jobs::webhook_retry_delay(w, 1, milliseconds(700), rng) == milliseconds(700));
  CHECK(jobs::webhook_retry_delay(w, 1, milliseconds(5000), rng) == milliseconds(1000));  // capped
}

TEST_CASE("webhooks: a delivery is POSTed once, signed, then marked delivered", "[.db][webhooks]") {
  WebhookDb db;
  WebhookReceiver receiver;
  vendors::HttpRuntime runtime;
  db::ConnectionPool pool(db.pool_options());
  jobs::WebhookDelivery delivery(pool, fast_config(), runtime);

  const Team team = db.team("hooked");
  CHECK(team.secret.rfind("whsec_", 0) == 0);
  CHECK(team.secret.size() == 6 + 64);
  const Team other = db.team("other-team");
  CHECK(other.secret != team.secret);

  const std::string body = event_body("j-1");
  const auto id = db.delivery(team, receiver.url("a?token=t0ken"), body);
  CHECK(delivery.run_once() == 1);

  auto got = receiver.received();
  REQUIRE(got.size() == 1);
  auto req = got[0];  // a copy: operator[] on its headers
  CHECK(req.path == "/hooks/a");
  CHECK(req.body == body);  // the stored bytes exactly
  CHECK(req.headers["content-type"] == "application/json");
  CHECK(req.headers["user-agent"].rfind("labelbroker/", 0) == 0);
  CHECK(req.headers["x-labelbroker-event"] == "job.completed");
  CHECK(req.headers["x-labelbroker-delivery"] == std::to_string(id));
  const auto& ts = req.headers["x-labelbroker-timestamp"];
  REQUIRE(!ts.empty());
  CHECK(ts.find_first_not_of("0123456789") == std::string::npos);
  // What a receiver does: recompute with its secret and compare in constant time.
  const auto expected = "sha256=" + common::hmac_sha256_hex(team.secret, req.body);
  CHECK(common::constant_time_equal(req.headers["x-labelbroker-signature"], expected));
  CHECK(req.headers["x-labelbroker-signature"] != "sha256=" + common::hmac_sha256_hex(other.secret, req.body));

  auto row = db.row(id);
  CHECK(row.delivered);
  CHECK_FALSE(row.failed);
  CHECK(row.attempts == 1);
  CHECK(row.last_status == 200);

  // Delivered rows are never claimed again, even once due.
  db.exec("UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 hour'");
  CHECK(delivery.run_once() == 0);
  CHECK(receiver.received().size() == 1);
}

TEST_CASE("webhooks: failed attempts are retried with backoff until delivered", "[.db][webhooks]") {
  WebhookDb db;
  WebhookReceiver receiver;
  vendors::HttpRuntime runtime;
  db::ConnectionPool pool(db.pool_options());
  jobs::WebhookDelivery delivery(pool, fast_config(), runtime);
  const Team team = db.team("retry-team");
  receiver.script({{500}, {500}, {200}});
  const auto id = db.delivery(team, receiver.url("b"), event_body("j-2"));

  CHECK(delivery.run_once() == 1);
  auto first = db.row(id);
  CHECK(first.attempts == 1);
  CHECK_FALSE(first.delivered);
  CHECK_FALSE(first.failed);
  CHECK(first.last_status == 500);
  CHECK(first.last_error == "HTTP 500");

  run_until_settled(db, delivery, id);
  auto row = db.row(id);
  CHECK(row.delivered);
  CHECK_FALSE(row.failed);
  CHECK(row.attempts == 3);
  CHECK(row.last_status == 200);
  CHECK(row.last_error.empty());
  auto got = receiver.received();
  REQUIRE(got.size() == 3);
  // Every attempt is the same delivery: receivers deduplicate on the id.
  for (const auto& r : got) {
    CHECK(r.headers.at("x-labelbroker-delivery") == std::to_string(id));
    CHECK(r.body == got[0].body);
    CHECK(r.headers.at("x-labelbroker-signature") == got[0].headers.at("x-labelbroker-signature"));
  }
  CHECK(delivery.run_once() == 0);
  CHECK(receiver.received().size() == 3);
}

TEST_CASE("webhooks: Retry-After on 429 and 503 sets the next attempt", "[.db][webhooks]") {
  WebhookDb db;
  WebhookReceiver receiver;
  vendors::HttpRuntime runtime;
  db::ConnectionPool pool(db.pool_options());
  auto cfg = fast_config();
  cfg.backoff_max = std::chrono::hours(1);  // jitter alone would pick at most 1 ms here
  jobs::WebhookDelivery delivery(pool, cfg, runtime);
  const Team team = db.team("busy-team");
  receiver.script({{429, "120"}, {503, "300"}});
  const auto id = db.delivery(team, receiver.url("c"), event_body("j-3"));

  CHECK(delivery.run_once() == 1);
  CHECK(db.row(id).last_status == 429);
  CHECK(db.query_bool("SELECT next_attempt_at BETWEEN now() + interval '110 seconds' AND now() + interval '121 seconds' "
                      "FROM webhook_deliveries"));
  CHECK(delivery.run_once() == 0);  // not due yet
  db.exec("UPDATE webhook_deliveries SET next_attempt_at = now()");
  CHECK(delivery.run_once() == 1);
  CHECK(db.row(id).last_status == 503);
  CHECK(db.query_bool("SELECT next_attempt_at BETWEEN now() + interval '290 seconds' AND now() + interval '301 seconds' "
                      "FROM webhook_deliveries"));
  CHECK(receiver.received().size() == 2);
}

TEST_CASE("webhooks: a delivery past its give-up time is marked failed and not retried", "[.db][webhooks]") {
  WebhookDb db;
  WebhookReceiver receiver;
  vendors::HttpRuntime runtime;
  db::ConnectionPool pool(db.pool_options());
  jobs::WebhookDelivery delivery(pool, fast_config(), runtime);
  const Team team = db.team("gone-team");
  receiver.script({{500}, {500}, {500}});
  const auto id = db.delivery(team, receiver.url("d"), event_body("j-4"), -1);

  CHECK(delivery.run_once() == 1);
  auto row = db.row(id);
  CHECK(row.failed);
  CHECK_FALSE(row.delivered);
  CHECK(row.attempts == 1);
  CHECK(row.last_status == 500);

  // Failed rows are never claimed again, even once due.
  db.exec("UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 hour'");
  CHECK(delivery.run_once() == 0);
  CHECK(receiver.received().size() == 1);
  CHECK(db.row(id).attempts == 1);
}

TEST_CASE("webhooks: give_up_after from the config bounds retries of an unreachable receiver", "[.db][webhooks]") {
  WebhookDb db;
  vendors::HttpRuntime runtime;
  db::ConnectionPool pool(db.pool_options());
  auto cfg = fast_config();
  cfg.give_up_after = milliseconds(1);  // the row was created a minute ago
  jobs::WebhookDelivery delivery(pool, cfg, runtime);
  const Team team = db.team("unreachable-team");
  // Nothing listens on port 1: the connection is refused, no HTTP status.
  const auto id = db.delivery(team, "http://127.0.0.1:1/hook", event_body("j-5"));

  CHECK(delivery.run_once() == 1);
  auto row = db.row(id);
  CHECK(row.failed);
  CHECK(row.attempts == 1);
  CHECK(row.last_status == 0);
  CHECK_FALSE(row.last_error.empty());
  CHECK(row.last_error.find("whsec_") == std::string::npos);
  CHECK(delivery.run_once() == 0);
}

TEST_CASE("webhooks: two deliverers on one database send each delivery exactly once", "[.db][webhooks]") {
  WebhookDb db;
  WebhookReceiver receiver;
  // Slow answers keep one deliverer's claims in flight while the other claims.
  receiver.set_delay(milliseconds(20));
  constexpr int kDeliveries = 60;
  const Team team = db.team("busy-hooks");
  std::set<std::string> ids;
  for (int i = 0; i < kDeliveries; ++i)
    ids.insert(std::to_string(db.delivery(team, receiver.url("e"), event_body("j-" + std::to_string(i)))));

  // Two "processes": each its own pool, HTTP runtime and deliverer.
  vendors::HttpRuntime runtime_a, runtime_b;
  db::ConnectionPool pool_a(db.pool_options()), pool_b(db.pool_options());
  jobs::WebhookDeliveryOptions small_batches;
  small_batches.batch_size = 4;
  jobs::WebhookDelivery a(pool_a, fast_config(), runtime_a, small_batches);
  jobs::WebhookDelivery b(pool_b, fast_config(), runtime_b, small_batches);

  std::atomic<int> ready{0};
  std::atomic<std::size_t> attempted_a{0}, attempted_b{0};
  const auto drain = [&](jobs::WebhookDelivery& d, std::atomic<std::size_t>& attempted) {
    ++ready;
    while (ready.load() < 2) std::this_thread::yield();
    while (auto n = d.run_once()) attempted += n;
  };
  std::thread ta(drain, std::ref(a), std::ref(attempted_a));
  std::thread tb(drain, std::ref(b), std::ref(attempted_b));
  ta.join();
  tb.join();

  INFO("deliverer a attempted " << attempted_a.load() << ", b " << attempted_b.load());
  CHECK(attempted_a.load() + attempted_b.load() == kDeliveries);
  auto got = receiver.received();
  CHECK(got.size() == kDeliveries);
  std::multiset<std::string> seen;
  for (const auto& r : got) seen.insert(r.headers.at("x-labelbroker-delivery"));
  CHECK(std::set<std::string>(seen.begin(), seen.end()) == ids);
  for (const auto& id : ids) CHECK(seen.count(id) == 1);
  CHECK(db.query_bool("SELECT bool_and(delivered_at IS NOT NULL AND attempts = 1) FROM webhook_deliveries"));
}

TEST_CASE("webhooks: the background loop delivers after notify() and stops cleanly", "[.db][webhooks]") {
  WebhookDb db;
  WebhookReceiver receiver;
  vendors::HttpRuntime runtime;
  db::ConnectionPool pool(db.pool_options());
  jobs::WebhookDeliveryOptions options;
  options.idle_wait = std::chrono::hours(1);  // only notify() can wake it after the first pass
  jobs::WebhookDelivery delivery(pool, fast_config(), runtime, options);
  const Team team = db.team("loop-team");
  delivery.start();
  const auto id = db.delivery(team, receiver.url("f"), event_body("j-6"));
  // The first pass may already have run (and found nothing): notify() makes it look again.
  delivery.notify();
  auto got = receiver.wait_for(1);
  delivery.stop();
  REQUIRE(got.size() == 1);
  CHECK(got[0].headers.at("x-labelbroker-delivery") == std::to_string(id));
  // stop() waits for the pass in progress, which records the outcome.
  CHECK(db.row(id).delivered);
}
