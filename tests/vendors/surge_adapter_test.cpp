// The Surge-style adapter: configuration, and behaviour against vendor-sim over real HTTP.
#include "tests/vendors/adapter_fixture.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using namespace labelbroker::vendors;
using std::chrono::milliseconds;

namespace {

std::string surge_entry(std::uint16_t port, const std::string& http = R"({"timeout_ms": 2000,
      "retry": {"max_attempts": 3, "initial_backoff_ms": 5, "max_backoff_ms": 20}})") {
  return R"({"id": "sg", "kind": "surge", "base_url": "http://127.0.0.1:)" + std::to_string(port) +
         R"(/sg/api", "api_key": "surge-key", "callback_secret": "surge-callback-secret-0123",
    "capabilities": {"task_types": ["classification", "rating"], "expertise": ["skilled"], "max_batch_size": 500},
    "payment_per_response": "0.15", "http": )" +
         http + "}";
}

std::vector<UnitRef> refs_of(const SubmitResult& result) {
  std::vector<UnitRef> refs;
  for (const auto& s : result.submitted) refs.push_back({s.assignment_id, s.vendor_task_id});
  return refs;
}

std::vector<WorkUnit> many_units(int n, const std::string& prefix) {
  std::vector<WorkUnit> units;
  for (int i = 0; i < n; ++i) units.push_back(unit(prefix + std::to_string(i), "note " + std::to_string(i)));
  return units;
}

}  // namespace

TEST_CASE("surge config: good and bad entries", "[vendors][surge]") {
  SimFixture fx;
  auto adapter = fx.adapter(surge_entry(fx.port()));
  CHECK(adapter->kind() == "surge");
  CHECK(adapter->quote_micros(unit("q", "x")) == 150000);
  CHECK_THROWS_WITH(fx.adapter(R"({"id": "sg", "kind": "surge", "base_url": "http://127.0.0.1:1/api",
      "api_key": "k", "callback_secret": "0123456789abcdef"})"),
                    "test.json: $.vendors[0].payment_per_response: is required");
  CHECK_THROWS_WITH(fx.adapter(R"({"id": "sg", "kind": "surge", "base_url": "http://127.0.0.1:1/api",
      "api_key": "k", "callback_secret": "0123456789abcdef", "payment_per_response": "0.1", "workers": 2})"),
                    "test.json: $.vendors[0].workers: unknown key");
}

TEST_CASE("surge adapter: one project per question set, bulk create, poll to completion", "[vendors][surge][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(surge_entry(fx.port()));
  auto result = adapter->submit(many_units(5, "s-"));
  REQUIRE(result.failed.empty());
  REQUIRE(result.submitted.size() == 5);
  auto done = poll_until_done(*adapter, refs_of(result));
  REQUIRE(done.size() == 5);
  for (const auto& r : done) {
    CHECK(r.status == UnitStatus::completed);
    REQUIRE(r.answer);
    CHECK((*r.answer == "urgent" || *r.answer == "routine" || *r.answer == "not_medical"));
    CHECK(r.cost_micros == 150000);
    CHECK(r.worker_id.has_value());
  }
  CHECK(adapter->describe()["projects"] == 1);
  CHECK(fx.stats("sg")["tasks_created"] == 5);
}

TEST_CASE("surge adapter: after a lost response it pages through the project and creates nothing twice",
          "[vendors][surge][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(surge_entry(fx.port()));
  REQUIRE(adapter->submit({unit("warm-up", "first")}).failed.empty());  // project exists and is launched
  // 150 tasks: more than one page of 100. The bulk create takes effect, then the answer is lost.
  fx.patch("sg", {{"fail_next", {{"count", 1}, {"status", 500}, {"after_commit", true}}}});
  auto units = many_units(150, "p-");
  auto result = adapter->submit(units);
  CHECK(result.failed.empty());
  REQUIRE(result.submitted.size() == 150);
  for (const auto& s : result.submitted) CHECK(s.already_existed);
  CHECK(fx.stats("sg")["tasks_created"] == 151);

  // A new broker process (new adapter, empty memory) re-submits the same units: still nothing new.
  auto fresh = fx.adapter(surge_entry(fx.port()));
  auto again = fresh->submit(units);
  INFO((again.failed.empty() ? std::string("no failures") : again.failed[0].message));
  REQUIRE(again.submitted.size() == 150);
  for (const auto& s : again.submitted) CHECK(s.already_existed);
  CHECK(fx.stats("sg")["tasks_created"] == 151);
}

TEST_CASE("surge adapter: page polling and cancelling a whole job", "[vendors][surge][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(surge_entry(fx.port()));
  fx.patch("sg", {{"paused", true}});
  auto units = many_units(120, "j-");
  REQUIRE(adapter->submit(units).submitted.size() == 120);
  auto listed = adapter->poll_updated_since({});
  REQUIRE(listed);
  CHECK(listed->size() == 120);  // two pages
  for (const auto& r : *listed) CHECK(r.status == UnitStatus::pending);

  CHECK(adapter->cancel_job("job-1") == std::optional<std::size_t>(1));
  auto after = adapter->poll_updated_since({});
  REQUIRE(after);
  REQUIRE(after->size() == 120);
  for (const auto& r : *after) CHECK(r.status == UnitStatus::canceled);
  CHECK(adapter->cancel_job("other-job") == std::optional<std::size_t>(0));
}

TEST_CASE("surge adapter: cancel is honest about what Surge can do", "[vendors][surge][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(surge_entry(fx.port()));
  fx.patch("sg", {{"paused", true}});
  auto waiting = adapter->submit({unit("c-1", "x")});
  REQUIRE(waiting.submitted.size() == 1);
  CHECK(adapter->cancel(refs_of(waiting)[0]) == CancelOutcome::unsupported);
  fx.patch("sg", {{"paused", false}});
  REQUIRE(poll_until_done(*adapter, refs_of(waiting)).size() == 1);
  CHECK(adapter->cancel(refs_of(waiting)[0]) == CancelOutcome::already_finished);
  CHECK(adapter->cancel({"c-9", "00000000-0000-0000-0000-000000000000"}) == CancelOutcome::not_found);
}

TEST_CASE("surge adapter: callbacks carry the token, a wrong token is rejected", "[vendors][surge][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(surge_entry(fx.port()));
  fx.receiver().attach(adapter.get());
  auto submitted = adapter->submit({unit("cb-1", "x")});
  REQUIRE(submitted.submitted.size() == 1);
  auto delivered = fx.receiver().wait_for(1);
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].assignment_id == "cb-1");
  CHECK(delivered[0].answer.has_value());
  CHECK(fx.receiver().rejected() == 0);

  InboundCallback forged;
  forged.body = R"({"id": "t", "status": "completed", "fields": {"_broker_ref": "cb-1"},
                    "responses": [{"data": {"label": "urgent"}}]})";
  forged.query = {{"token", "surge-callback-secret-0124"}};
  CHECK_THROWS_AS(adapter->parse_callback(forged), CallbackRejected);
  forged.query.clear();
  CHECK_THROWS_AS(adapter->parse_callback(forged), CallbackRejected);
  forged.query = {{"token", "surge-callback-secret-0123"}};
  CHECK(adapter->parse_callback(forged).at(0).answer == "urgent");
  forged.body = R"({"id": "t", "status": "completed", "responses": []})";
  CHECK_THROWS_AS(adapter->parse_callback(forged), VendorError);
}

TEST_CASE("surge adapter: 429, outage, timeout and bad keys are classified", "[vendors][surge][sim]") {
  SimFixture fx;
  SECTION("429 with Retry-After, before anything was created") {
    auto adapter = fx.adapter(surge_entry(fx.port()));
    fx.patch("sg", {{"rate_429", 1}, {"retry_after_s", 1}});
    auto result = adapter->submit({unit("r-1", "x")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::retryable);
    CHECK(result.failed[0].retry_after == milliseconds(1000));
  }
  SECTION("outage") {
    auto adapter = fx.adapter(surge_entry(fx.port()));
    fx.patch("sg", {{"outage", true}});
    auto result = adapter->submit({unit("o-1", "x")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::retryable);
  }
  SECTION("a hanging vendor times out") {
    auto adapter = fx.adapter(surge_entry(fx.port(), R"({"timeout_ms": 300, "retry": {"max_attempts": 1}})"));
    fx.patch("sg", {{"hang_rate", 1}, {"hang_ms", 3000}});
    auto result = adapter->submit({unit("h-1", "x")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::retryable);
  }
  SECTION("wrong key") {
    auto entry = surge_entry(fx.port());
    entry.replace(entry.find("surge-key"), 9, "wrong-key");
    auto adapter = fx.adapter(entry);
    auto result = adapter->submit({unit("k-1", "x")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::auth);
  }
}
