// The real labelbroker binary, run as a child process.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/scratch_db.hpp"

using namespace labelbroker::testing;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

const std::string kBinary = LABELBROKER_BINARY;
const std::string kPgScript = std::string(LABELBROKER_SOURCE_DIR) + "/scripts/pg";

// Lines of stderr that are not JSON log lines: what a person sees.
std::vector<std::string> plain_lines(const std::string& err) {
  std::vector<std::string> out;
  std::istringstream in(err);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.front() != '{') out.push_back(line);
  }
  return out;
}

// Starts `labelbroker serve` on a free port and returns the port it logged.
std::uint16_t wait_for_listening(ChildProcess& broker) {
  REQUIRE(broker.wait_for_stderr("\"msg\":\"listening\"", seconds(60)));
  std::smatch m;
  const std::string err = broker.errors();
  REQUIRE(std::regex_search(err, m, std::regex(R"re("url":"http://127\.0\.0\.1:(\d+)")re")));
  return static_cast<std::uint16_t>(std::stoi(m[1]));
}

int status_or_zero(std::uint16_t port, const std::string& path) {
  try {
    return http_request(port, "GET", path).status;
  } catch (const std::exception&) {
    return 0;
  }
}

// Polls until the status matches; gives up after `limit` (a hang guard, not a performance bound).
bool eventually_status(std::uint16_t port, const std::string& path, int expected, seconds limit = seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (status_or_zero(port, path) == expected) return true;
    std::this_thread::sleep_for(milliseconds(100));
  }
  return false;
}

}  // namespace

TEST_CASE("labelbroker: config errors print one clear line and exit 2", "[e2e][config]") {
  struct Case {
    std::string text;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {R"({"http": {"io_threads": "many"}})", "$.http.io_threads: expected an integer, got string"},
      {R"({"database": {"pool_sise": 4}})", "$.database.pool_sise: unknown key"},
      {"{ not json", "invalid JSON"},
  };
  for (const auto& c : cases) {
    const std::string path = write_temp_file(c.text);
    auto r = run_process({kBinary, "serve", "--config", path}, {{"LABELBROKER_CONFIG", ""}});
    std::filesystem::remove(path);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    auto lines = plain_lines(r.err);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].rfind("labelbroker: config error: " + path + ": ", 0) == 0);
    CHECK(lines[0].find(c.expected) != std::string::npos);
  }

  auto missing = run_process({kBinary, "serve"}, {{"LABELBROKER_CONFIG", "/nonexistent/labelbroker.json"}});
  CHECK(missing.exit_code == 2);
  CHECK(missing.err == "labelbroker: config error: /nonexistent/labelbroker.json: config file not found\n");
}

TEST_CASE("labelbroker: --help, --version and usage errors", "[e2e]") {
  auto help = run_process({kBinary, "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("Exit codes:") != std::string::npos);
  auto version = run_process({kBinary, "--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.out.rfind("labelbroker ", 0) == 0);
  auto bad = run_process({kBinary, "frobnicate"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("unknown command 'frobnicate'") != std::string::npos);
}

TEST_CASE("labelbroker migrate is idempotent and checksum-guarded", "[.db][e2e][migrations]") {
  ScratchDatabase scratch;
  const std::map<std::string, std::string> env = {{"LABELBROKER_DATABASE_URL", scratch.url()},
                                                  {"LABELBROKER_CONFIG", "/dev/null/none"}};
  // /dev/null/none cannot exist: make sure no stray config is picked up, then use defaults via cwd.
  const std::map<std::string, std::string> env_defaults = {{"LABELBROKER_DATABASE_URL", scratch.url()},
                                                           {"LABELBROKER_CONFIG", ""}};
  auto first = run_process({kBinary, "migrate"}, env_defaults);
  INFO(first.err);
  CHECK(first.exit_code == 0);
  CHECK(first.err.find("applied migration") != std::string::npos);

  auto second = run_process({kBinary, "migrate"}, env_defaults);
  CHECK(second.exit_code == 0);
  CHECK(second.err.find("applied migration") == std::string::npos);
  CHECK(second.err.find("\"applied_now\":0") != std::string::npos);

  {
    pqxx::connection c(scratch.url());
    pqxx::work tx(c);
    tx.exec0("UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 1");
    tx.commit();
  }
  for (const std::string command : {"migrate", "serve"}) {
    auto refused = run_process({kBinary, command}, env_defaults);
    INFO(command << ": " << refused.err);
    CHECK(refused.exit_code == 3);
    auto lines = plain_lines(refused.err);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("schema/0001_") != std::string::npos);
    CHECK(lines[0].find("changed after it was applied") != std::string::npos);
  }
  (void)env;
}

TEST_CASE("labelbroker serve: ready on a migrated database, exits 0 on SIGTERM", "[.db][e2e][signals]") {
  ScratchDatabase scratch;
  ChildProcess broker(
      {kBinary, "serve"},
      {{"LABELBROKER_DATABASE_URL", scratch.url()}, {"LABELBROKER_LISTEN", "127.0.0.1:0"}, {"LABELBROKER_CONFIG", ""}});
  const auto port = wait_for_listening(broker);
  auto ready = http_request(port, "GET", "/readyz");
  CHECK(ready.status == 200);
  const std::map<std::string, std::string> admin_env = {{"LABELBROKER_DATABASE_URL", scratch.url()},
                                                        {"LABELBROKER_CONFIG", ""}};
  REQUIRE(run_process({kBinary, "admin", "create-team", "e2e"}, admin_env).exit_code == 0);
  auto key = run_process({kBinary, "admin", "create-key", "--team", "e2e", "--role", "viewer"}, admin_env);
  REQUIRE(key.exit_code == 0);
  CHECK(http_request(port, "GET", "/v1/version").status == 401);
  auto version = nlohmann::json::parse(
      http_request(port, "GET", "/v1/version", "", {{"Authorization", "Bearer " + key.out.substr(0, 57)}}).body);
  CHECK(version["schema_version"] == version["expected_schema_version"]);
  CHECK(version["git_commit"].is_string());

  broker.signal(SIGTERM);
  auto code = broker.wait(seconds(60));
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK(broker.errors().find("\"msg\":\"stopped\"") != std::string::npos);
  // Every request was logged as one JSON line with the fields operators search by.
  CHECK(broker.errors().find(R"("msg":"request","method":"GET","path":"/readyz","status":200)") != std::string::npos);
  CHECK(broker.errors().find(scratch.url().substr(0, 10)) != std::string::npos);
}

TEST_CASE("/readyz follows the database down and back up without a broker restart", "[.db][e2e][readyz]") {
  // A private cluster of our own: stopping the shared one would break other tests.
  auto dir = std::filesystem::temp_directory_path() / ("lb-readyz-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::map<std::string, std::string> pg_env = {{"LABELBROKER_PG_DIR", (dir / "pg").string()},
                                                     {"LABELBROKER_PG_PORT", std::to_string(free_port())}};
  struct Cleanup {
    std::map<std::string, std::string> env;
    std::filesystem::path dir;
    ~Cleanup() {
      run_process({kPgScript, "stop"}, env);
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{pg_env, dir};

  auto started = run_process({kPgScript, "start"}, pg_env);
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  auto url = run_process({kPgScript, "url"}, pg_env);
  REQUIRE(url.exit_code == 0);
  std::string database_url = url.out.substr(0, url.out.find('\n'));

  ChildProcess broker(
      {kBinary, "serve"},
      {{"LABELBROKER_DATABASE_URL", database_url}, {"LABELBROKER_LISTEN", "127.0.0.1:0"}, {"LABELBROKER_CONFIG", ""}});
  const auto port = wait_for_listening(broker);
  CHECK(eventually_status(port, "/readyz", 200));

  REQUIRE(run_process({kPgScript, "stop"}, pg_env).exit_code == 0);
  CHECK(eventually_status(port, "/readyz", 503));
  auto down = http_request(port, "GET", "/readyz");
  CHECK(nlohmann::json::parse(down.body)["detail"] == "cannot connect to the database");
  CHECK(http_request(port, "GET", "/healthz").status == 200);  // alive, just not ready

  REQUIRE(run_process({kPgScript, "start"}, pg_env).exit_code == 0);
  CHECK(eventually_status(port, "/readyz", 200));
  CHECK(broker.running());

  broker.signal(SIGTERM);
  CHECK(broker.wait(seconds(60)) == std::optional<int>(0));
}
