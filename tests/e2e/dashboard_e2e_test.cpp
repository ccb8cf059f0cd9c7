// The dashboard in a real browser: a broker with vendor-sim traffic serves /dashboard, and headless
// Chromium (Debian's, driven by playwright-core from npm; both installed by scripts/setup-deps)
// enters a wrong key and then a viewer key, and checks every configured vendor's card, the share
// chart's cap line, the market panel and the error message (tests/browser/dashboard.mjs). The
// screenshots land in the build directory.
#include <cstdio>
#include <cstdlib>
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
