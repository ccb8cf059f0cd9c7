// GET /metrics against a real PostgreSQL: the series a scrape shows match what the database and
// the process hold, requests are counted by route pattern, require_key asks for a key, and
// promtool accepts the page.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "api/metrics_routes.hpp"
#include "api/routes.hpp"
#include "config/config.hpp"
#include "db/migrations.hpp"
#include "db/probe.hpp"
#include "http/server.hpp"
#include "metrics/http_metrics.hpp"
#include "metrics/process_metrics.hpp"
#include "support/api_fixture.hpp"
#include "support/api_keys.hpp"
#include "support/http_client.hpp"
#include "support/loopback_server.hpp"
#include "support/process.hpp"
#include "support/scratch_db.hpp"
#include "vendors/common/http_client.hpp"
#include "vendors/registry.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using json = nlohmann::json;

namespace {

// The v1 API with /metrics, wired as service.cpp wires it (request observer, counters attached to
// the finished router), on a scratch database. No engine: jobs stay where the test puts them.
class MetricsFixture {
 public:
  explicit MetricsFixture(config::MetricsConfig metrics_config = {}, const std::string& vendors_config = kTwoVendors) {
    {
      pqxx::connection c(scratch_.url());
      db::apply_migrations(c, db::builtin_migrations());
    }
    submitter = make_key(scratch_.url(), "team-a", auth::Role::submitter);
    viewer = make_key(scratch_.url(), "team-a", auth::Role::viewer);
    const auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    auto cfg = config::parse_config(vendors_config, "test.json", env);
    vendors::VendorRegistry registry;
    vendors::register_builtin_vendors(registry);
    vendor_set_ = vendors::VendorSet(registry, cfg.vendors, {runtime_, "http://127.0.0.1:9/cb", "test.json", env});
    db::PoolOptions p;
    p.url = scratch_.url();
    p.size = 4;
    pool_ = std::make_unique<db::ConnectionPool>(p);
    dispatch_ = std::make_unique<jobs::Dispatch>(*pool_, vendor_set_, cfg.vendors);
    // The refresher is not started: the test takes readings with refresh_now().
    metrics = std::make_unique<api::MetricsService>(*pool_, *dispatch_, &http_metrics_, metrics_config,
                                                    config::QualityConfig{});
    api::register_api(
        router_,
        {*pool_, lifecycle_, db::expected_schema_version(), vendor_set_, *dispatch_, {}, {}, nullptr, metrics.get()});
    http_metrics_.attach(router_);
    auto options = loopback_server_options(1, 2);
    options.observer = [this](const http::Route* route, int status, double seconds) {
      http_metrics_.record(route, status, seconds);
    };
    server_ = std::make_unique<http::Server>(options, router_, lifecycle_);
    server_->start();
  }
  ~MetricsFixture() {
    server_->begin_shutdown();
    server_->wait();
  }

  HttpResult get(const std::string& path, const std::string& key = "") {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
    return http_request(server_->port(), "GET", path, "", headers);
  }
  HttpResult post(const std::string& path, const json& body) {
    return http_request(server_->port(), "POST", path, body.dump(),
                        {{"Authorization", "Bearer " + submitter}, {"Content-Type", "application/json"}});
  }
  void exec(const std::string& sql) {
    pqxx::connection c(scratch_.url());
    pqxx::nontransaction(c).exec0(sql);
  }
  std::string text(const std::string& sql) {
    pqxx::connection c(scratch_.url());
    return pqxx::nontransaction(c).exec1(sql)[0].as<std::string>();
  }
  jobs::Dispatch& dispatch() { return *dispatch_; }

  std::string submitter, viewer;
  std::unique_ptr<api::MetricsService> metrics;

 private:
  ScratchDatabase scratch_;
  vendors::HttpRuntime runtime_;
  vendors::VendorSet vendor_set_;
  std::unique_ptr<db::ConnectionPool> pool_;
  std::unique_ptr<jobs::Dispatch> dispatch_;
  http::Lifecycle lifecycle_;
  http::Router router_;
  metrics::HttpMetrics http_metrics_;
  std::unique_ptr<http::Server> server_;  // destroyed first
};

json job_body(int items) {
  json body = {{"name", "triage"},
               {"task_type", "classification"},
               {"domain", "general"},
               {"labels", {"yes", "no"}},
               {"redundancy", 2},
               {"budget_usd", "100.00"},
               {"deadline", "2099-01-01T00:00:00Z"}};
  body["items"] = json::array();
  for (int i = 0; i < items; ++i) body["items"].push_back({{"id", "i-" + std::to_string(i)}, {"data", {{"t", i}}}});
  return body;
}

// The value of the sample written exactly as `series` (name and labels), or nullopt.
std::optional<double> value_of(const std::string& page, const std::string& series) {
  const std::string needle = "\n" + series + " ";
  auto at = ("\n" + page).find(needle);
  if (at == std::string::npos) return std::nullopt;
  return std::stod(page.substr(at + needle.size() - 1));
}

// Scrapes until `series` has `want` (the server counts a request just after writing its answer,
// so the next scrape may come a moment too early), at most for two seconds.
std::optional<double> eventually(MetricsFixture& f, const std::string& series, double want) {
  std::optional<double> got;
  for (int i = 0; i < 100; ++i) {
    got = value_of(f.get("/metrics").body, series);
    if (got && *got == want) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return got;
}

struct Promtool {
  int exit_code = -1;
  std::string output;
};

// Pipes `page` to `promtool check metrics`; its findings come on stdout and stderr.
Promtool promtool_check(const std::string& page) {
  char path[] = "/tmp/lb-metrics-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, page.data(), page.size()) == static_cast<ssize_t>(page.size()));
  ::close(fd);
  Promtool out;
  const std::string command = "/usr/bin/promtool check metrics < " + std::string(path) + " 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe);
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.output.append(buffer, n);
  const int status = ::pclose(pipe);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  ::unlink(path);
  return out;
}

}  // namespace

TEST_CASE("metrics api: a scrape shows jobs, assignments, ledger, vendors and requests, promtool accepts it",
          "[.db][metrics-api]") {
  MetricsFixture f;

  // Two queued jobs and a draft.
  auto first = f.post("/v1/jobs", job_body(4));
  REQUIRE(first.status == 201);
  const std::string job = json::parse(first.body)["id"];
  REQUIRE(f.post("/v1/jobs", job_body(2)).status == 201);
  REQUIRE(f.post("/v1/jobs?draft=true", job_body(1)).status == 201);

  // Work in flight: three units queued for scale, one sending, one submitted to surge.
  const std::string q = "'" + job + "'";
  f.exec("INSERT INTO assignments (job_id, item_id, vendor_id, state) VALUES (" + q + ", 'i-0', 'scale', 'queued'), (" +
         q + ", 'i-1', 'scale', 'queued'), (" + q + ", 'i-2', 'scale', 'queued'), (" + q +
         ", 'i-3', 'scale', 'sending'), (" + q + ", 'i-0', 'surge', 'submitted'), (" + q +
         ", 'i-1', 'surge', 'completed')");

  // This month's ledger: the team and scale accounts, one settle still queued as a delta; last
  // month's account does not count.
  const std::string month = f.text("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')");
  const std::string team_id = f.text("SELECT id FROM teams WHERE name = 'team-a'");
  f.exec("INSERT INTO budget_accounts (key, held_micros, spent_micros) VALUES ('team:" + team_id + ":" + month +
         "', 2500000, 1500000), ('vendor:scale:" + month + "', 2500000, 1500000), ('vendor:scale:1999-01', 9, 9)");
  f.exec("INSERT INTO account_deltas (key, held_delta, spent_delta) VALUES ('team:" + team_id + ":" + month +
         "', -500000, 500000), ('vendor:scale:" + month + "', -500000, 500000)");

  // Rolled-up quality: scale 8 of 10 gold right and 30 judgments in the last day, surge 10.
  f.exec(
      "INSERT INTO vendor_keys (key, vendor_id, domain) VALUES ('[\"scale\",null,null,null]', 'scale', NULL), "
      "('[\"surge\",null,null,null]', 'surge', NULL), ('[\"scale\",\"general\",null,null]', 'scale', 'general')");
  f.exec(
      "INSERT INTO vendor_cumulative SELECT k.id, date_trunc('hour', now()), v.judgments, v.gold_n, v.gold_correct, "
      "0, 0, 0, 0, 0, 0, array_fill(0::bigint, ARRAY[14]) FROM vendor_keys k JOIN (VALUES "
      "('[\"scale\",null,null,null]', 30, 10, 8), ('[\"surge\",null,null,null]', 10, 0, 0), "
      "('[\"scale\",\"general\",null,null]', 999, 999, 999)) v(key, judgments, gold_n, gold_correct) ON v.key = k.key");
  // ... and older history that the share's 24 hours leave out.
  f.exec(
      "INSERT INTO vendor_cumulative SELECT id, date_trunc('hour', now()) - interval '2 days', 20, 0, 0, 0, 0, 0, 0, "
      "0, 0, array_fill(0::bigint, ARRAY[14]) FROM vendor_keys WHERE key = '[\"scale\",null,null,null]'");

  f.dispatch().book().count_error("surge", vendors::ErrorClass::capacity);
  f.dispatch().book().count_error("surge", vendors::ErrorClass::capacity);
  f.dispatch().book().record_failure("scale");

  REQUIRE(f.metrics->refresh_now());
  auto scrape = f.get("/metrics");
  REQUIRE(scrape.status == 200);
  CHECK(scrape.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  const std::string& page = scrape.body;
  INFO(page);

  CHECK(value_of(page, "labelbroker_jobs{status=\"queued\"}") == 2);
  CHECK(value_of(page, "labelbroker_jobs{status=\"draft\"}") == 1);
  CHECK(value_of(page, "labelbroker_jobs{status=\"running\"}") == 0);
  CHECK(value_of(page, "labelbroker_jobs{status=\"budget_exhausted\"}") == 0);

  CHECK(value_of(page, "labelbroker_assignments_in_flight{vendor=\"scale\",state=\"queued\"}") == 3);
  CHECK(value_of(page, "labelbroker_assignments_in_flight{vendor=\"scale\",state=\"sending\"}") == 1);
  CHECK(value_of(page, "labelbroker_assignments_in_flight{vendor=\"scale\",state=\"submitted\"}") == 0);
  CHECK(value_of(page, "labelbroker_assignments_in_flight{vendor=\"surge\",state=\"submitted\"}") == 1);
  CHECK(value_of(page, "labelbroker_assignments_in_flight{vendor=\"surge\",state=\"queued\"}") == 0);
  CHECK(page.find("state=\"completed\"") == std::string::npos);
  CHECK(value_of(page, "labelbroker_dispatch_queue_depth{vendor=\"scale\"}") == 3);
  CHECK(value_of(page, "labelbroker_dispatch_queue_depth{vendor=\"surge\"}") == 0);

  CHECK(value_of(page, "labelbroker_ledger_held_dollars") == 2.0);
  CHECK(value_of(page, "labelbroker_ledger_spent_dollars") == 2.0);
  CHECK(value_of(page, "labelbroker_vendor_spend_dollars{vendor=\"scale\"}") == 2.0);
  CHECK(value_of(page, "labelbroker_vendor_held_dollars{vendor=\"scale\"}") == 2.0);
  CHECK(value_of(page, "labelbroker_vendor_spend_dollars{vendor=\"surge\"}") == 0);

  // Beta(1, 1) prior: (1 + 8) / (2 + 10).
  CHECK(value_of(page, "labelbroker_vendor_quality_estimate{vendor=\"scale\"}") == Approx(0.75));
  CHECK(value_of(page, "labelbroker_vendor_quality_estimate{vendor=\"surge\"}") == Approx(0.5));
  CHECK(value_of(page, "labelbroker_vendor_gold_answers_total{vendor=\"scale\"}") == 10);
  CHECK(value_of(page, "labelbroker_vendor_gold_correct_total{vendor=\"scale\"}") == 8);
  // Last 24 h: scale 30 - 20 = 10, surge 10.
  CHECK(value_of(page, "labelbroker_vendor_share{vendor=\"scale\"}") == Approx(0.5));
  CHECK(value_of(page, "labelbroker_vendor_share{vendor=\"surge\"}") == Approx(0.5));

  CHECK(value_of(page, "labelbroker_vendor_breaker_state{vendor=\"scale\",state=\"closed\"}") == 1);
  CHECK(value_of(page, "labelbroker_vendor_breaker_state{vendor=\"scale\",state=\"open\"}") == 0);
  CHECK(value_of(page, "labelbroker_vendor_breaker_state{vendor=\"surge\",state=\"half_open\"}") == 0);
  CHECK(value_of(page, "labelbroker_vendor_errors_total{vendor=\"surge\",class=\"capacity\"}") == 2);
  CHECK(value_of(page, "labelbroker_vendor_errors_total{vendor=\"scale\",class=\"auth\"}") == 0);

  CHECK(value_of(page, "labelbroker_db_pool_size") == 4);
  CHECK(value_of(page, "labelbroker_db_pool_waiting") == 0);
  CHECK(value_of(page, "labelbroker_db_pool_connections{state=\"in_use\"}"));
  CHECK(value_of(page, "labelbroker_db_pool_connections{state=\"idle\"}") >= 1);
  CHECK(value_of(page, "labelbroker_metrics_snapshot_errors_total") == 0);
  CHECK(value_of(page, "labelbroker_metrics_snapshot_age_seconds") < 60);
  CHECK(page.find("\nlabelbroker_build_info{version=\"") != std::string::npos);
  CHECK(value_of(page, "process_open_fds") > 0);

  // Requests: the three POSTs so far, by pattern, never by raw path.
  CHECK(value_of(page, "labelbroker_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"201\"}") == 3);
  CHECK(page.find("/v1/jobs/" + job) == std::string::npos);
  const std::string job_route =
      "labelbroker_http_requests_total{method=\"GET\",route=\"/v1/jobs/{id}\",status=\"200\"}";
  CHECK_FALSE(value_of(page, job_route));
  REQUIRE(f.get("/v1/jobs/" + job, f.viewer).status == 200);
  REQUIRE(f.get("/v1/jobs/" + job, f.viewer).status == 200);
  REQUIRE(f.get("/v1/no-such-thing").status == 404);
  REQUIRE(f.get("/v1/jobs/" + job).status == 401);
  CHECK(eventually(f, job_route, 2) == 2);
  CHECK(eventually(f, "labelbroker_http_requests_total{method=\"\",route=\"unmatched\",status=\"404\"}", 1) == 1);
  CHECK(eventually(f, "labelbroker_http_requests_total{method=\"GET\",route=\"/v1/jobs/{id}\",status=\"401\"}", 1) ==
        1);
  CHECK(eventually(f, "labelbroker_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/jobs/{id}\"}", 3) ==
        3);
  // Scrapes count too.
  CHECK(value_of(f.get("/metrics").body,
                 "labelbroker_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}") >= 1);

  // The breaker opens after five failures in a row.
  for (int i = 0; i < 5; ++i) f.dispatch().book().record_failure("scale");
  const auto after = f.get("/metrics").body;
  CHECK(value_of(after, "labelbroker_vendor_breaker_state{vendor=\"scale\",state=\"open\"}") == 1);
  CHECK(value_of(after, "labelbroker_vendor_breaker_state{vendor=\"scale\",state=\"closed\"}") == 0);

  const auto check = promtool_check(after);
  INFO(check.output);
  CHECK(check.exit_code == 0);
  std::istringstream lines(check.output);
  for (std::string line; std::getline(lines, line);) CHECK(line.find("error") == std::string::npos);
}

TEST_CASE("metrics api: require_key asks for any valid key", "[.db][metrics-api]") {
  config::MetricsConfig with_key;
  with_key.require_key = true;
  MetricsFixture f(with_key);
  CHECK(f.get("/metrics").status == 401);
  CHECK(f.get("/metrics", "lbk_nonsense").status == 401);
  auto scrape = f.get("/metrics", f.viewer);
  REQUIRE(scrape.status == 200);
  CHECK(scrape.body.find("# TYPE labelbroker_build_info gauge") != std::string::npos);
}

TEST_CASE("metrics api: before the first reading and when the database fails, the page still renders",
          "[.db][metrics-api]") {
  MetricsFixture f;
  // No reading yet: no cluster series, but everything from the process.
  auto page = f.get("/metrics").body;
  CHECK(page.find("labelbroker_jobs{") == std::string::npos);
  CHECK(value_of(page, "labelbroker_metrics_snapshot_errors_total") == 0);
  CHECK(page.find("labelbroker_vendor_breaker_state{vendor=\"scale\",state=\"closed\"} 1") != std::string::npos);
  REQUIRE(f.metrics->refresh_now());
  // A table the reading needs is gone: the refresh fails, the last reading stays.
  f.exec("ALTER TABLE account_deltas RENAME TO account_deltas_gone");
  CHECK_FALSE(f.metrics->refresh_now());
  page = f.get("/metrics").body;
  CHECK(value_of(page, "labelbroker_metrics_snapshot_errors_total") == 1);
  CHECK(value_of(page, "labelbroker_jobs{status=\"queued\"}") == 0);
  CHECK(promtool_check(page).exit_code == 0);
}

TEST_CASE("metrics api: with metrics.listen, the real binary serves /metrics there and only there",
          "[.db][metrics-api]") {
  ScratchDatabase scratch;
  const auto config = write_temp_file(R"({"metrics": {"listen": "127.0.0.1:0", "refresh_ms": 200}})");
  ChildProcess broker({LABELBROKER_BINARY, "serve"}, {{"LABELBROKER_DATABASE_URL", scratch.url()},
                                                      {"LABELBROKER_LISTEN", "127.0.0.1:0"},
                                                      {"LABELBROKER_CONFIG", config}});
  REQUIRE(broker.wait_for_stderr("\"msg\":\"listening\"", std::chrono::seconds(60)));
  const std::string err = broker.errors();
  std::smatch main_url, metrics_url;
  REQUIRE(std::regex_search(err, main_url, std::regex(R"re("msg":"listening","url":"http://127\.0\.0\.1:(\d+)")re")));
  REQUIRE(std::regex_search(err, metrics_url, std::regex(R"re("url":"http://127\.0\.0\.1:(\d+)/metrics")re")));
  const auto main_port = static_cast<std::uint16_t>(std::stoi(main_url[1]));
  const auto metrics_port = static_cast<std::uint16_t>(std::stoi(metrics_url[1]));
  REQUIRE(main_port != metrics_port);

  CHECK(http_request(main_port, "GET", "/metrics").status == 404);
  CHECK(http_request(main_port, "GET", "/healthz").status == 200);
  CHECK(http_request(metrics_port, "GET", "/healthz").status == 404);
  std::string page;
  for (int i = 0; i < 100 && page.find("labelbroker_jobs{") == std::string::npos; ++i) {
    auto scrape = http_request(metrics_port, "GET", "/metrics");
    REQUIRE(scrape.status == 200);
    page = scrape.body;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(page.find("\nlabelbroker_jobs{status=\"queued\"} 0\n") != std::string::npos);
  // The main listener's requests are counted: the 404 for /metrics there, /healthz.
  CHECK(page.find("labelbroker_http_requests_total{method=\"\",route=\"unmatched\",status=\"404\"} 1") !=
        std::string::npos);
  CHECK(page.find("labelbroker_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1") !=
        std::string::npos);
  CHECK(promtool_check(page).exit_code == 0);

  broker.signal(SIGTERM);
  auto code = broker.wait(std::chrono::seconds(60));
  REQUIRE(code);
  CHECK(*code == 0);
}

// Not a test: how long render() takes with 50 vendors (the page /metrics serves), in process,
// without HTTP. bench/metrics.sh measures the whole request; this separates the rendering. Needs
// LABELBROKER_TEST_DATABASE_URL like the database tests, but is not one of them (hidden, [.bench]).
TEST_CASE("metrics api: render time with 50 vendors", "[.bench][metrics-bench]") {
  json fleet = json::object({{"vendors", json::array()}});
  for (int i = 1; i <= 50; ++i) {
    const std::string id = "v" + std::to_string(100 + i);
    fleet["vendors"].push_back(
        {{"id", id},
         {"kind", "scale"},
         {"base_url", "http://127.0.0.1:9/" + id + "/v1"},
         {"api_key", "k"},
         {"callback_secret", "callback-secret-0123456789"},
         {"capabilities", {{"task_types", {"classification"}}, {"domains", {"general"}}, {"expertise", {"general"}}}},
         {"prices", {{"classification", "0.04"}, {"preference", "0.06"}, {"rating", "0.08"}}}});
  }
  MetricsFixture f({}, fleet.dump());
  REQUIRE(f.metrics->refresh_now());
  for (int i = 0; i < 20; ++i) f.get("/metrics");  // some request series
  std::size_t bytes = 0;
  const int n = 2000;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) bytes += f.metrics->render().size();
  const double whole = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
  std::string page;
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    page.clear();
    metrics::Writer out(page);
    metrics::render_process_metrics(out);
  }
  const double process = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
  std::printf("render(): %.1f us per page of %zu bytes; of which /proc: %.1f us\n", whole, bytes / n, process);
  CHECK(bytes > 0);
}
