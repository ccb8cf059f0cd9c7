// The Scale-style adapter against vendor-sim over real HTTP.
#include "tests/vendors/adapter_fixture.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using namespace labelbroker::vendors;
using std::chrono::milliseconds;

#include <set>

namespace {

std::string scale_entry(std::uint16_t port, const std::string& extra = "", const std::string& key = "scale-key") {
  return R"({"id": "sc", "kind": "scale", "base_url": "http://127.0.0.1:)" + std::to_string(port) +
         R"(/sc/v1", "api_key": ")" + key + R"(", "callback_secret": "scale-callback-secret-0123",
    "capabilities": {"task_types": ["classification", "preference", "rating"], "domains": ["medical", "general"]},
    "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"},
    "http": {"timeout_ms": 2000, "retry": {"max_attempts": 3, "initial_backoff_ms": 5, "max_backoff_ms": 20)" +
         extra + "}}}";
}

std::vector<UnitRef> refs_of(const SubmitResult& result) {
  std::vector<UnitRef> refs;
  for (const auto& s : result.submitted) refs.push_back({s.assignment_id, s.vendor_task_id});
  return refs;
}

}  // namespace

TEST_CASE("scale adapter: create, poll to completion, cost and answers", "[vendors][scale][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(scale_entry(fx.port()));
  std::vector<WorkUnit> units = {unit("a-1", "Chest pain since this morning"), unit("a-2", "Sprained ankle"),
                                 unit("a-3", "Rate the reply", TaskType::rating, {"1", "2", "3", "4", "5"}),
                                 unit("a-4", "Which answer is better?", TaskType::preference, {"A", "B"})};
  auto result = adapter->submit(units);
  REQUIRE(result.failed.empty());
  REQUIRE(result.submitted.size() == 4);
  for (const auto& s : result.submitted) CHECK_FALSE(s.already_existed);

  auto done = poll_until_done(*adapter, refs_of(result));
  REQUIRE(done.size() == 4);
  for (std::size_t i = 0; i < done.size(); ++i) {
    const auto& r = done[i];
    INFO(r.assignment_id);
    CHECK(r.status == UnitStatus::completed);
    REQUIRE(r.answer);
    const auto& labels = units[i].labels;
    CHECK(std::find(labels.begin(), labels.end(), *r.answer) != labels.end());
    CHECK(r.assignment_id == units[i].assignment_id);
  }
  CHECK(done[0].cost_micros == 40000);
  CHECK(done[2].cost_micros == 80000);
  CHECK(done[3].cost_micros == 60000);
  CHECK(fx.stats("sc")["tasks_created"] == 4);
}

TEST_CASE("scale adapter: polling by listing pages through next_token", "[vendors][scale][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(scale_entry(fx.port()));
  std::vector<WorkUnit> units;
  for (int i = 0; i < 150; ++i) units.push_back(unit("pg-" + std::to_string(i), "note " + std::to_string(i)));
  auto submitted = adapter->submit(units);
  REQUIRE(submitted.submitted.size() == 150);
  std::optional<std::vector<UnitResult>> listed;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {  // until every task is completed (bounded)
    listed = adapter->poll_updated_since(std::chrono::system_clock::time_point{});
    REQUIRE(listed);
  } while (std::count_if(listed->begin(), listed->end(), [](const auto& r) { return r.status == UnitStatus::completed; }) <
               150 &&
           std::chrono::steady_clock::now() < deadline);
  REQUIRE(listed->size() == 150);  // two pages of at most 100
  std::set<std::string> ids;
  for (const auto& r : *listed) {
    ids.insert(r.assignment_id);
    CHECK(r.status == UnitStatus::completed);
  }
  CHECK(ids.size() == 150);
  // Nothing changed after "now": an empty list, not an error.
  CHECK(adapter->poll_updated_since(std::chrono::system_clock::now() + std::chrono::hours(1))->empty());
}

TEST_CASE("scale adapter: a lost response and a re-submit never create a second task", "[vendors][scale][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(scale_entry(fx.port()));
  // The vendor creates the task, then answers 500: the client retries, gets 409, finds the task.
  fx.patch("sc", {{"fail_next", {{"count", 1}, {"status", 500}, {"after_commit", true}}}});
  auto first = adapter->submit({unit("dup-1", "text")});
  REQUIRE(first.submitted.size() == 1);
  CHECK(first.submitted[0].already_existed);
  CHECK(fx.stats("sc")["tasks_created"] == 1);
  CHECK(fx.stats("sc")["duplicate_creates_refused"] == 1);

  // The broker, after a crash, submits the same assignment again.
  auto again = adapter->submit({unit("dup-1", "text")});
  REQUIRE(again.submitted.size() == 1);
  CHECK(again.submitted[0].already_existed);
  CHECK(again.submitted[0].vendor_task_id == first.submitted[0].vendor_task_id);
  CHECK(fx.stats("sc")["tasks_created"] == 1);
}

TEST_CASE("scale adapter: cancel before start works, after completion it is refused", "[vendors][scale][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(scale_entry(fx.port()));
  fx.patch("sc", {{"paused", true}});  // workers do not pick anything up
  auto waiting = adapter->submit({unit("c-1", "text")});
  REQUIRE(waiting.submitted.size() == 1);
  CHECK(adapter->cancel(refs_of(waiting)[0]) == CancelOutcome::canceled);
  CHECK(adapter->poll(refs_of(waiting))[0].status == UnitStatus::canceled);

  fx.patch("sc", {{"paused", false}});
  auto worked = adapter->submit({unit("c-2", "text")});
  REQUIRE(poll_until_done(*adapter, refs_of(worked)).size() == 1);
  CHECK(adapter->cancel(refs_of(worked)[0]) == CancelOutcome::already_finished);
  CHECK(adapter->cancel({"c-9", "000000000000000000000000"}) == CancelOutcome::not_found);
}

TEST_CASE("scale adapter: callbacks are verified by scale-callback-auth", "[vendors][scale][sim]") {
  SimFixture fx;
  auto adapter = fx.adapter(scale_entry(fx.port()));
  fx.receiver().attach(adapter.get());
  auto submitted = adapter->submit({unit("cb-1", "text")});
  REQUIRE(submitted.submitted.size() == 1);
  auto delivered = fx.receiver().wait_for(1);
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].assignment_id == "cb-1");
  CHECK(delivered[0].vendor_task_id == submitted.submitted[0].vendor_task_id);
  CHECK(delivered[0].status == UnitStatus::completed);
  CHECK(delivered[0].answer.has_value());

  InboundCallback forged;
  forged.body = R"({"task": {"task_id": "x", "status": "completed", "response": {"category": "urgent"}}})";
  forged.headers = {{"scale-callback-auth", "scale-callback-secret-0124"}};
  CHECK_THROWS_AS(adapter->parse_callback(forged), CallbackRejected);
  forged.headers.clear();
  CHECK_THROWS_AS(adapter->parse_callback(forged), CallbackRejected);
  forged.headers = {{"Scale-Callback-Auth", "scale-callback-secret-0123"}};
  CHECK(adapter->parse_callback(forged).at(0).answer == "urgent");
  forged.body = "{\"task\": ";  // authentic but truncated
  CHECK_THROWS_AS(adapter->parse_callback(forged), VendorError);
}

TEST_CASE("scale adapter: 429, outage, timeout and bad keys become classified errors", "[vendors][scale][sim]") {
  SimFixture fx;

  SECTION("429 with Retry-After is waited out, then handed back as retryable") {
    auto adapter = fx.adapter(scale_entry(fx.port(), R"(, "max_retry_after_ms": 5000)"));
    fx.patch("sc", {{"rate_429", 1}, {"retry_after_s", 1}});
    const auto started = std::chrono::steady_clock::now();
    auto result = adapter->submit({unit("r-1", "text")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::retryable);
    CHECK(result.failed[0].retry_after == milliseconds(1000));
    CHECK(std::chrono::steady_clock::now() - started >= milliseconds(2000));  // two waits of 1 s
    CHECK(fx.stats("sc")["tasks_created"] == 0);
  }
  SECTION("an outage is retryable") {
    auto adapter = fx.adapter(scale_entry(fx.port()));
    fx.patch("sc", {{"outage", true}});
    auto result = adapter->submit({unit("o-1", "text")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::retryable);
    try {
      adapter->poll({{"o-1", "abc"}});
      FAIL("poll during an outage must throw");
    } catch (const VendorError& e) {
      CHECK(e.error_class() == ErrorClass::retryable);
      CHECK(e.http_status() == 503);
    }
  }
  SECTION("a vendor that hangs times out as retryable, and the caller gets its thread back") {
    auto adapter = fx.adapter(R"({"id": "sc", "kind": "scale", "base_url": "http://127.0.0.1:)" +
                              std::to_string(fx.port()) + R"(/sc/v1", "api_key": "scale-key",
        "callback_secret": "scale-callback-secret-0123", "prices": {"classification": "0.04"},
        "http": {"timeout_ms": 300, "retry": {"max_attempts": 1}}})");
    fx.patch("sc", {{"hang_rate", 1}, {"hang_ms", 3000}});
    auto result = adapter->submit({unit("h-1", "text")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::retryable);
    CHECK(result.failed[0].message.find("timeout") != std::string::npos);
  }
  SECTION("a wrong key is an auth error") {
    auto adapter = fx.adapter(scale_entry(fx.port(), "", "wrong-key"));
    auto result = adapter->submit({unit("k-1", "text")});
    REQUIRE(result.failed.size() == 1);
    CHECK(result.failed[0].error_class == ErrorClass::auth);
  }
}

TEST_CASE("scale adapter: malformed vendor responses are classified, never crash", "[vendors][scale]") {
  // A misbehaving "vendor": HTML error pages, truncated JSON, wrong types, missing ids.
  http::Router router;
  http::Lifecycle lifecycle;
  http::ServerOptions options;
  options.port = 0;
  options.access_log = false;
  router.add("POST", "/bad/v1/task/categorization", [](http::Request& req) {
    if (req.body.find("html-502") != std::string::npos)
      return http::Response::text(502, "<html><body>Bad Gateway</body></html>", "text/html");
    if (req.body.find("truncated") != std::string::npos) return http::Response::json(200, R"({"task_id": "abc)");
    return http::Response::json(200, R"({"task_id": 12345})");  // wrong type
  });
  router.add("GET", "/bad/v1/tasks", [](http::Request&) { return http::Response::json(200, R"({"docs": "nope"})"); });
  router.add("GET", "/bad/v1/task/{id}", [](http::Request& req) {
    if (req.path_param("id") == "no-id") return http::Response::json(200, R"({"status": "completed"})");
    if (req.path_param("id") == "no-answer")
      return http::Response::json(200, R"({"task_id": "no-answer", "status": "completed", "response": {"x": 1}})");
    return http::Response::json(200, "[1, 2");
  });
  http::Server bad(options, router, lifecycle);
  bad.start();

  HttpRuntime runtime;
  const auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto cfg = config::parse_config(R"({"vendors": [{"id": "bad", "kind": "scale", "base_url": "http://127.0.0.1:)" +
                                      std::to_string(bad.port()) + R"(/bad/v1", "api_key": "k",
      "callback_secret": "0123456789abcdef", "prices": {"classification": "0.01"},
      "http": {"retry": {"max_attempts": 1}}}]})",
                                  "test.json", env);
  VendorRegistry registry;
  register_builtin_vendors(registry);
  auto adapter = registry.create(cfg.vendors[0], {runtime, "http://127.0.0.1:1/v1/callbacks", "test.json", env});

  auto result = adapter->submit({unit("html-502", "html-502"), unit("truncated", "truncated"), unit("typed", "typed")});
  REQUIRE(result.failed.size() == 3);
  for (const auto& f : result.failed) {
    INFO(f.assignment_id << ": " << f.message);
    CHECK(f.error_class == ErrorClass::retryable);  // created or not is unknown: safe to retry (unique_id)
  }
  for (const std::string id : {"no-id", "no-answer", "garbage"}) {
    INFO(id);
    try {
      adapter->poll({{"x", id}});
      FAIL("expected a VendorError");
    } catch (const VendorError& e) {
      CHECK(e.error_class() == ErrorClass::permanent);
      CHECK(std::string(e.what()).find("malformed") != std::string::npos);
    }
  }
}
