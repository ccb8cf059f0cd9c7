// The ops surface end to end, with real broker processes:
// - the dashboard in a real browser: a broker with vendor-sim traffic serves /dashboard, and
//   headless Chromium (Debian's, driven by playwright-core from npm; both installed by
//   scripts/setup-deps) enters a wrong key and then a viewer key, and checks every configured
//   vendor's card, the share chart's cap line, the market panel and the error message
//   (tests/browser/dashboard.mjs). The screenshots land in the build directory;
// - a key's rate limit holds across two broker processes sharing the database.
#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <filesystem>
#include <sys/wait.h>

#include <catch2/catch.hpp>

#include "support/api_keys.hpp"
#include "support/fleet.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;

namespace {

// Runs `command` through the shell; returns its exit status and everything it printed.
std::pair<int, std::string> run(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe);
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace

TEST_CASE("dashboard e2e: headless Chromium shows every vendor with numbers, the cap line and a wrong key's error",
          "[.db][e2e-dashboard]") {
  Fleet fleet(50, 2000, [](json& config) { config["quality"] = {{"gold_rate", 0.5}, {"scores_cache_ms", 0}}; });
  const auto port = free_port();
  auto broker = fleet.start_broker(port);
  // General work reaches scale, scale-small and surge; expert work reaches mercor.
  const auto general = fleet.submit(port, with_gold(make_job(120, 2, "general"), 12));
  auto expert_job = with_gold(make_job(20, 1, "expert"), 6);
  expert_job["domain"] = "medical";
  const auto expert = fleet.submit(port, expert_job);
  REQUIRE(fleet.wait_until_finished(port, general) == "completed");
  REQUIRE(fleet.wait_until_finished(port, expert) == "completed");

  // The maintenance loop rolls answers up; wait until every vendor has a cost per correct label.
  const std::vector<std::string> vendors = {"scale", "scale-small", "surge", "mercor"};
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  bool measured = false;
  while (!measured && std::chrono::steady_clock::now() < deadline) {
    auto scores = fleet.get(port, "/v1/vendors/scores");
    measured = scores["vendors"].size() == vendors.size();
    for (const auto& v : scores["vendors"]) measured = measured && !v["cost_per_correct_label_usd"].is_null();
    if (!measured) std::this_thread::sleep_for(milliseconds(250));
  }
  REQUIRE(measured);

  const auto viewer = make_key(fleet.db_url(), "team-a", auth::Role::viewer);
  const char* build_dir = std::getenv("LABELBROKER_BUILD_DIR");
  const std::string shots = build_dir ? build_dir : std::filesystem::temp_directory_path().string();
  std::filesystem::remove(shots + "/dashboard-laptop.png");
  std::string list;
  for (const auto& v : vendors) list += (list.empty() ? "" : ",") + v;
  const auto [status, output] =
      run("cd '" + std::string(LABELBROKER_SOURCE_DIR) + "' && LABELBROKER_URL=http://127.0.0.1:" +
          std::to_string(port) + " LABELBROKER_VIEWER_KEY='" + viewer + "' LABELBROKER_EXPECT_VENDORS='" + list +
          "' LABELBROKER_SCREENSHOT_DIR='" + shots + "' node tests/browser/dashboard.mjs");
  INFO(output);
  CHECK(status == 0);
  CHECK(output.find("not ok") == std::string::npos);
  CHECK(std::filesystem::file_size(shots + "/dashboard-laptop.png") > 10000);
  CHECK(std::filesystem::file_size(shots + "/dashboard-wall.png") > 10000);
}

TEST_CASE("ops e2e: a key's rate limit holds across two broker processes sharing the database", "[.db][e2e-ops]") {
  Fleet fleet;
  const auto port_a = free_port(), port_b = free_port();
  auto broker_a = fleet.start_broker(port_a);
  auto broker_b = fleet.start_broker(port_b);
  const std::string admin = make_key(fleet.db_url(), "team-a", auth::Role::admin);
  auto created = http_request(port_a, "POST", "/v1/keys",
                              R"({"team": "team-a", "role": "viewer",
                                  "rate_limit": {"requests_per_second": 5, "burst": 5}})",
                              {{"Authorization", "Bearer " + admin}, {"Content-Type", "application/json"}});
  REQUIRE(created.status == 201);
  const std::string key = json::parse(created.body)["key"];

  // Four clients, two per process, as fast as they can for about 2 s.
  std::atomic<int> admitted{0}, refused{0}, other{0}, admitted_by_a{0};
  std::atomic<bool> retry_after_ok{true};
  const auto started = std::chrono::steady_clock::now();
  const auto stop_at = started + seconds(2);
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i)
    clients.emplace_back([&, port = i % 2 ? port_b : port_a] {
      while (std::chrono::steady_clock::now() < stop_at) {
        auto r = http_request(port, "GET", "/v1/vendors", "", {{"Authorization", "Bearer " + key}});
        if (r.status == 200) {
          ++admitted;
          if (port == port_a) ++admitted_by_a;
        } else if (r.status == 429) {
          ++refused;
          auto retry = r.header("Retry-After");
          if (!retry || std::stoi(*retry) < 1) retry_after_ok = false;
        } else {
          ++other;
        }
      }
    });
  for (auto& c : clients) c.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  INFO("admitted " << admitted << ", refused " << refused << " in " << elapsed << " s");
  CHECK(other == 0);
  CHECK(admitted >= 5);
  CHECK(admitted <= 5 + 5 * elapsed);  // burst + rate x time, over both processes together
  CHECK(refused > 0);
  CHECK(retry_after_ok);
  // Both processes admitted some: they share one allowance, neither has one of its own.
  CHECK(admitted_by_a > 0);
  CHECK(admitted_by_a < admitted);
  pqxx::connection c(fleet.db_url());
  CHECK(pqxx::nontransaction(c).exec("SELECT 1 FROM rate_buckets").size() == 1);
}
