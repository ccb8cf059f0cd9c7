// The vendor-sim binary: help, usage and scenario errors (exit 2, one line), listening on port 0,
// clean exit on SIGTERM.
#include <csignal>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/http_client.hpp"
#include "support/process.hpp"

using namespace labelbroker::testing;

TEST_CASE("cli: --help prints usage and exits 0", "[sim][cli]") {
  auto r = run_process({VENDOR_SIM_BINARY, "--help"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("usage: vendor-sim") != std::string::npos);
}

TEST_CASE("cli: bad arguments and bad scenarios exit 2 with one line", "[sim][cli]") {
  auto unknown = run_process({VENDOR_SIM_BINARY, "--frobnicate"});
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find("unknown argument '--frobnicate'") != std::string::npos);

  const std::string bad = write_temp_file(R"({"vendors":[{"id":"v","kind":"scale","api_key":"k",
      "callback_secret":"s","prices_micros":{},"accuracy":{"*":"high"}}]})");
  auto r = run_process({VENDOR_SIM_BINARY, "--scenario", bad});
  CHECK(r.exit_code == 2);
  CHECK(r.err == "vendor-sim: scenario error: " + bad + ": $.vendors[0].accuracy.*: expected a number, got string\n");

  auto missing = run_process({VENDOR_SIM_BINARY, "--scenario", "/nonexistent/s.json"});
  CHECK(missing.exit_code == 2);
  CHECK(missing.err == "vendor-sim: scenario error: /nonexistent/s.json: cannot read scenario file\n");

  auto listen = run_process({VENDOR_SIM_BINARY, "--listen", "nowhere"}, {}, std::chrono::seconds(30));
  CHECK(listen.exit_code == 2);
}

TEST_CASE("cli: --listen 127.0.0.1:0 logs the bound URL - SIGTERM exits 0", "[sim][cli]") {
  ChildProcess sim({VENDOR_SIM_BINARY, "--scenario", std::string(LABELBROKER_SOURCE_DIR) + "/config/sim/default.json",
                    "--listen", "127.0.0.1:0"},
                   {{"VENDOR_SIM_LISTEN", "127.0.0.1:1"}});
  REQUIRE(sim.wait_for_stderr("\"msg\":\"listening\"", std::chrono::seconds(30)));
  std::uint16_t port = 0;
  std::string line;
  std::istringstream err(sim.errors());
  while (std::getline(err, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("msg", "") == "listening") {
      const std::string url = j["url"];
      REQUIRE(url.rfind("http://127.0.0.1:", 0) == 0);
      port = static_cast<std::uint16_t>(std::stoi(url.substr(17)));
    }
  }
  REQUIRE(port != 0);
  CHECK(http_request(port, "GET", "/healthz").status == 200);
  auto stats = nlohmann::json::parse(http_request(port, "GET", "/_sim/stats").body);
  CHECK(stats["vendors"].size() == 4);
  sim.signal(SIGTERM);
  CHECK(sim.wait(std::chrono::seconds(30)) == std::optional<int>(0));
}
