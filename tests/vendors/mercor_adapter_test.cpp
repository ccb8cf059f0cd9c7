// The Mercor-style adapter: configuration, and behaviour against vendor-sim over real HTTP.
#include "common/crypto.hpp"
#include "tests/vendors/adapter_fixture.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using namespace labelbroker::vendors;
using std::chrono::milliseconds;

namespace {

std::string mercor_entry(std::uint16_t port, const std::string& extra = "",
                         const std::string& http = R"({"timeout_ms": 2000,
      "retry": {"max_attempts": 3, "initial_backoff_ms": 5, "max_backoff_ms": 20}})") {
  return R"({"id": "mc", "kind": "mercor", "base_url": "http://127.0.0.1:)" + std::to_string(port) +
         R"(/mc/v1", "api_key": "mercor-key", "callback_secret": "mercor-callback-secret-0123",
    "capabilities": {"task_types": ["classification"], "domains": ["medical", "legal"], "expertise": ["expert"]},
    "hourly_rate_max": "150.00", "expected_minutes_per_item": 20)" +
         extra + R"(, "http": )" + http + "}";
}

WorkUnit expert_unit(const std::string& id) {
  auto u = unit(id, "Chest pain since " + id);
  u.expertise = Expertise::expert;
  return u;
}

std::vector<UnitRef> refs_of(const SubmitResult& result) {
  std::vector<UnitRef> refs;
  for (const auto& s : result.submitted) refs.push_back({s.assignment_id, s.vendor_task_id});
  return refs;
}

InboundCallback signed_callback(const std::string& body, const std::string& secret, std::int64_t timestamp) {
  InboundCallback cb;
  cb.body = body;
  cb.headers = {{"X-Signature", "sha256=" + common::hmac_sha256_hex(secret, body)},
                {"X-Timestamp", std::to_string(timestamp)}};
  return cb;
}

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

TEST_CASE("mercor config: good and bad entries", "[vendors][mercor]") {
  SimFixture fx;
  auto adapter = fx.adapter(mercor_entry(fx.port()));
  CHECK(adapter->kind() == "mercor");
  CHECK(adapter->quote_micros(expert_unit("q")) == 50000000);  // $150/h x 20 min
  CHECK_THROWS_WITH(fx.adapter(R"({"id": "mc", "kind": "mercor", "base_url": "http://127.0.0.1:1/v1",
      "api_key": "k", "callback_secret": "0123456789abcdef"})"),
                    "test.json: $.vendors[0].hourly_rate_max: is required");
  CHECK_THROWS_WITH(fx.adapter(mercor_entry(fx.port(), R"(, "weekly_cap_hours": 500)")),
                    "test.json: $.vendors[0].weekly_cap_hours: must be between 1 and 168");
}

TEST_CASE("mercor adapter: engages the best expert within the rate cap and bills minutes x rate",
          "[vendors][mercor][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(mercor_entry(fx.port()));
  auto result = adapter->submit({expert_unit("m-1"), expert_unit("m-2")});
  INFO((result.failed.empty() ? std::string() : result.failed[0].message));
  REQUIRE(result.submitted.size() == 2);
  auto done = poll_until_done(*adapter, refs_of(result));
  REQUIRE(done.size() == 2);
  for (const auto& r : done) {
    CHECK(r.status == UnitStatus::completed);
    CHECK(r.answer.has_value());
    CHECK(r.time_spent == milliseconds(30 * 60 * 1000));
    CHECK(r.cost_micros == 60000000);  // "md": $120/h for 30 minutes; "pricey" is over the cap
  }
  auto engagements = adapter->describe()["engagements"];
  REQUIRE(engagements.size() == 1);
  CHECK(engagements[0]["domain"] == "medical");
}

TEST_CASE("mercor adapter: a lost response and a re-submitted batch replay, never duplicate", "[vendors][mercor][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(mercor_entry(fx.port()));
  REQUIRE(adapter->submit({expert_unit("warm")}).failed.empty());  // requisition and engagement exist
  const auto created_before = fx.stats("mc")["tasks_created"].get<int>();
  fx.patch("mc", {{"fail_next", {{"count", 1}, {"status", 500}, {"after_commit", true}}}});
  auto first = adapter->submit({expert_unit("d-1"), expert_unit("d-2")});
  REQUIRE(first.submitted.size() == 2);
  auto again = adapter->submit({expert_unit("d-1"), expert_unit("d-2")});
  REQUIRE(again.submitted.size() == 2);
  for (const auto& s : again.submitted) CHECK(s.already_existed);
  CHECK(again.submitted[0].vendor_task_id == first.submitted[0].vendor_task_id);
  CHECK(fx.stats("mc")["tasks_created"].get<int>() == created_before + 2);
}

TEST_CASE("mercor adapter: the weekly cap is capacity, not lost work", "[vendors][mercor][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(mercor_entry(fx.port(), R"(, "weekly_cap_hours": 1)"));
  auto first = adapter->submit({expert_unit("w-1"), expert_unit("w-2")});  // 2 x 30 min = the cap
  REQUIRE(first.submitted.size() == 2);
  REQUIRE(poll_until_done(*adapter, refs_of(first)).size() == 2);
  auto over = adapter->submit({expert_unit("w-3")});
  REQUIRE(over.failed.size() == 1);
  CHECK(over.failed[0].error_class == ErrorClass::capacity);
  CHECK(over.failed[0].retry_after.has_value());
}

TEST_CASE("mercor adapter: cancel while queued, refused once done", "[vendors][mercor][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(mercor_entry(fx.port()));
  fx.patch("mc", {{"paused", true}});
  auto queued = adapter->submit({expert_unit("c-1")});
  REQUIRE(queued.submitted.size() == 1);
  CHECK(adapter->cancel(refs_of(queued)[0]) == CancelOutcome::canceled);
  fx.patch("mc", {{"paused", false}});
  auto worked = adapter->submit({expert_unit("c-2")});
  REQUIRE(poll_until_done(*adapter, refs_of(worked)).size() == 1);
  CHECK(adapter->cancel(refs_of(worked)[0]) == CancelOutcome::already_finished);
}

TEST_CASE("mercor adapter: callbacks must be signed and fresh", "[vendors][mercor][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(mercor_entry(fx.port()));
  fx.receiver().attach(adapter.get());
  auto submitted = adapter->submit({expert_unit("cb-1")});
  REQUIRE(submitted.submitted.size() == 1);
  auto delivered = fx.receiver().wait_for(1);
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].assignment_id == "cb-1");
  CHECK(delivered[0].status == UnitStatus::completed);

  const std::string body = R"({"event": "work_item.done", "work_item": {"id": "wi_1", "ref": "x", "status": "done",
                                "answer": "urgent", "minutes_spent": 12, "cost_usd": "24.000000"}})";
  auto good = adapter->parse_callback(signed_callback(body, "mercor-callback-secret-0123", now_seconds()));
  CHECK(good.at(0).answer == "urgent");
  CHECK(good.at(0).cost_micros == 24000000);
  CHECK_THROWS_AS(adapter->parse_callback(signed_callback(body, "mercor-callback-secret-0124", now_seconds())),
                  CallbackRejected);
  CHECK_THROWS_AS(adapter->parse_callback(signed_callback(body, "mercor-callback-secret-0123", now_seconds() - 600)),
                  CallbackRejected);  // a replay of an old callback
  auto tampered = signed_callback(body, "mercor-callback-secret-0123", now_seconds());
  tampered.body.replace(tampered.body.find("urgent"), 6, "routin");
  CHECK_THROWS_AS(adapter->parse_callback(tampered), CallbackRejected);
  CHECK_THROWS_AS(adapter->parse_callback(InboundCallback{}), CallbackRejected);
}

TEST_CASE("mercor adapter: outage, timeout and bad keys are classified", "[vendors][mercor][sim]") {
  SimFixture fx;
  SECTION("outage") {
    auto adapter = fx.adapter(mercor_entry(fx.port()));
    fx.patch("mc", {{"outage", true}});
    auto result = adapter->submit({expert_unit("o-1")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::retryable);
  }
  SECTION("a rate limit is retryable, unlike the weekly cap") {
    auto adapter = fx.adapter(mercor_entry(fx.port()));
    REQUIRE(adapter->submit({expert_unit("warm")}).failed.empty());
    fx.patch("mc", {{"rate_429", 1}, {"retry_after_s", 1}});
    auto result = adapter->submit({expert_unit("l-1")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::retryable);
    CHECK(result.failed[0].retry_after == milliseconds(1000));
  }
  SECTION("timeout") {
    auto adapter = fx.adapter(mercor_entry(fx.port(), "", R"({"timeout_ms": 300, "retry": {"max_attempts": 1}})"));
    fx.patch("mc", {{"hang_rate", 1}, {"hang_ms", 3000}});
    auto result = adapter->submit({expert_unit("h-1")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::retryable);
  }
  SECTION("wrong key") {
    auto entry = mercor_entry(fx.port());
    entry.replace(entry.find("mercor-key"), 10, "wrong-keys");
    auto adapter = fx.adapter(entry);
    auto result = adapter->submit({expert_unit("k-1")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::auth);
  }
}
