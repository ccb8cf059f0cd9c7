// Scale adapter configuration: accepted when complete, rejected with the JSON path otherwise.
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "vendors/registry.hpp"

using namespace labelbroker;
using namespace labelbroker::vendors;

namespace {

const char* kGood = R"({"vendors": [{
  "id": "scale", "kind": "scale", "base_url": "http://127.0.0.1:9100/scale/v1/",
  "api_key": {"env": "SCALE_KEY"}, "callback_secret": "0123456789abcdef-secret",
  "capabilities": {"task_types": ["classification", "preference"], "domains": ["general"],
                   "expertise": ["general", "skilled"], "max_batch_size": 50},
  "prices": {"classification": "0.08", "preference": "0.12"},
  "http": {"max_in_flight": 16, "timeout_ms": 5000, "retry": {"max_attempts": 4}}}]})";

config::EnvLookup env() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (name == "SCALE_KEY") return "live_scale_key";
    return std::nullopt;
  };
}

std::unique_ptr<VendorAdapter> create(const std::string& text, HttpRuntime& runtime) {
  auto cfg = config::parse_config(text, "test.json", env());
  VendorRegistry registry;
  register_builtin_vendors(registry);
  AdapterContext context{runtime, "http://broker.example/v1/callbacks", "test.json", env()};
  return registry.create(cfg.vendors.at(0), context);
}

std::string error_for(std::string text, HttpRuntime& runtime) {
  try {
    create(text, runtime);
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "no error";
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  REQUIRE(pos != std::string::npos);
  return text.replace(pos, from.size(), to);
}

}  // namespace

TEST_CASE("scale config: a complete entry makes an adapter", "[vendors][scale]") {
  HttpRuntime runtime;
  auto adapter = create(kGood, runtime);
  CHECK(adapter->id() == "scale");
  CHECK(adapter->kind() == "scale");
  CHECK(adapter->capabilities().max_batch_size == 50);
  CHECK(adapter->capabilities().max_in_flight == 16);
  CHECK(adapter->capabilities().supports(TaskType::preference, "general", Expertise::skilled));
  CHECK_FALSE(adapter->capabilities().supports(TaskType::rating, "general", Expertise::general));
  CHECK_FALSE(adapter->capabilities().supports(TaskType::classification, "medical", Expertise::general));
  WorkUnit unit;
  unit.task_type = TaskType::preference;
  CHECK(adapter->quote_micros(unit) == 120000);
  CHECK(adapter->describe()["base_url"] == "http://127.0.0.1:9100/scale/v1");  // trailing slash dropped
}

TEST_CASE("scale config: mistakes are reported with their JSON path", "[vendors][scale]") {
  HttpRuntime runtime;
  CHECK(error_for(replace(kGood, R"("kind": "scale")", R"("kind": "scalez")"), runtime) ==
        "test.json: $.vendors[0].kind: unknown vendor kind 'scalez' (mercor, scale, surge)");
  CHECK(error_for(replace(kGood, R"("prices": {"classification": "0.08", )", R"("prices": {)"), runtime) ==
        "test.json: $.vendors[0].prices.classification: price is required for every task type the vendor takes");
  CHECK(error_for(replace(kGood, R"("0.12")", R"(0.12)"), runtime) ==
        "test.json: $.vendors[0].prices.preference: expected a string, got number");
  CHECK(error_for(replace(kGood, R"("0.12")", R"("12 cents")"), runtime) ==
        "test.json: $.vendors[0].prices.preference: expected a decimal USD amount such as \"0.08\"");
  CHECK(error_for(replace(kGood, R"("timeout_ms": 5000)", R"("timeout": 5000)"), runtime) ==
        "test.json: $.vendors[0].http.timeout: unknown key");
  CHECK(error_for(replace(kGood, R"("base_url": "http://127.0.0.1:9100/scale/v1/")", R"("base_url": "ftp://x")"),
                  runtime) == "test.json: $.vendors[0].base_url: must start with http:// or https://");
  CHECK(error_for(replace(kGood, R"("api_key": {"env": "SCALE_KEY"})", R"("api_key": {"env": "NOPE"})"), runtime) ==
        "test.json: $.vendors[0].api_key: environment variable NOPE is not set");
  CHECK(error_for(replace(kGood, R"("callback_secret": "0123456789abcdef-secret")", R"("callback_secret": "short")"),
                  runtime) == "test.json: $.vendors[0].callback_secret: must be at least 16 characters");
  CHECK(error_for(replace(kGood, R"(["classification", "preference"])", R"(["classification", "ranking"])"),
                  runtime) ==
        "test.json: $.vendors[0].capabilities.task_types[1]: unknown task type 'ranking' (classification, preference, "
        "rating)");
  CHECK(error_for(replace(kGood, R"("max_batch_size": 50)", R"("max_batch_size": 0)"), runtime) ==
        "test.json: $.vendors[0].capabilities.max_batch_size: must be between 1 and 10000");
}

TEST_CASE("config: vendor ids are required, well formed and unique", "[vendors][config]") {
  auto error = [](const std::string& text) {
    try {
      config::parse_config(text, "test.json", env());
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error(R"({"vendors": {}})") == "test.json: $.vendors: expected an array, got object");
  CHECK(error(R"({"vendors": [{"kind": "scale"}]})") ==
        "test.json: $.vendors[0].id: is required: 1-63 characters of a-z, 0-9 and '-'");
  CHECK(error(R"({"vendors": [{"id": "Scale!", "kind": "scale"}]})") ==
        "test.json: $.vendors[0].id: is required: 1-63 characters of a-z, 0-9 and '-'");
  CHECK(error(R"({"vendors": [{"id": "a", "kind": "scale"}, {"id": "a", "kind": "surge"}]})") ==
        "test.json: $.vendors[1].id: duplicate vendor id 'a'");
  CHECK(error(R"({"vendors": [{"id": "a"}]})") == "test.json: $.vendors[0].kind: is required");
}
