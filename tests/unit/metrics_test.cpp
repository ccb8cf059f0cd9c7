// The Prometheus exposition writer, the per-route request counters and the metrics config section.
#include <cmath>
#include <limits>
#include <string>

#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "http/router.hpp"
#include "metrics/exposition.hpp"
#include "metrics/http_metrics.hpp"
#include "metrics/process_metrics.hpp"

using namespace labelbroker;
using metrics::Type;
using metrics::Writer;

namespace {

bool has_line(const std::string& page, const std::string& line) {
  return ("\n" + page).find("\n" + line + "\n") != std::string::npos;
}

config::Config parse(const std::string& text) {
  const auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  return config::parse_config(text, "test.json", env);
}

}  // namespace

TEST_CASE("metrics: families, samples and label values are written in the text format", "[metrics]") {
  std::string page;
  Writer out(page);
  out.family("lb_things_total", Type::counter, "Things, with a \\ and a\nnewline.");
  out.sample("lb_things_total", {{"kind", "a\"b\\c\nd"}, {"x", ""}}, std::uint64_t{18446744073709551615ull});
  out.sample("lb_things_total", {}, 3.0);
  out.family("lb_ratio", Type::gauge, "A ratio.");
  out.sample("lb_ratio", {{"v", "scale"}}, 0.25);
  out.sample("lb_ratio", {{"v", "inf"}}, std::numeric_limits<double>::infinity());
  out.sample("lb_ratio", {{"v", "-inf"}}, -std::numeric_limits<double>::infinity());
  out.sample("lb_ratio", {{"v", "nan"}}, std::nan(""));
  out.sample("lb_ratio", {{"v", "tiny"}}, 1e-7);
  out.sample("lb_ratio", {{"v", "big"}}, 1e300);
  out.sample("lb_ratio", {{"v", "neg"}}, -42.0);
  out.sample("lb_ratio", {{"v", "small"}}, 0.0005);
  out.sample("lb_ratio", {{"v", "third"}}, 1.0 / 3);

  CHECK(has_line(page, "# HELP lb_things_total Things, with a \\\\ and a\\nnewline."));
  CHECK(has_line(page, "# TYPE lb_things_total counter"));
  CHECK(has_line(page, "lb_things_total{kind=\"a\\\"b\\\\c\\nd\",x=\"\"} 18446744073709551615"));
  CHECK(has_line(page, "lb_things_total 3"));
  CHECK(has_line(page, "# TYPE lb_ratio gauge"));
  CHECK(has_line(page, "lb_ratio{v=\"scale\"} 0.25"));
  CHECK(has_line(page, "lb_ratio{v=\"inf\"} +Inf"));
  CHECK(has_line(page, "lb_ratio{v=\"-inf\"} -Inf"));
  CHECK(has_line(page, "lb_ratio{v=\"nan\"} NaN"));
  CHECK(has_line(page, "lb_ratio{v=\"tiny\"} 1e-07"));
  CHECK(has_line(page, "lb_ratio{v=\"big\"} 1e+300"));
  CHECK(has_line(page, "lb_ratio{v=\"neg\"} -42"));
  CHECK(has_line(page, "lb_ratio{v=\"small\"} 0.0005"));
  CHECK(has_line(page, "lb_ratio{v=\"third\"} 0.3333333333333333"));
  CHECK(page.back() == '\n');
}

TEST_CASE("metrics: a histogram has cumulative buckets, +Inf, _sum and _count", "[metrics]") {
  std::string page;
  Writer out(page);
  out.family("lb_seconds", Type::histogram, "Durations.");
  // 1 at <= 0.1, 2 at <= 1, 0 at <= 2.5, 3 above.
  out.histogram("lb_seconds", {{"route", "/v1/jobs/{id}"}}, {0.1, 1, 2.5}, {1, 2, 0, 3}, 12.5);
  CHECK(has_line(page, "# TYPE lb_seconds histogram"));
  CHECK(has_line(page, "lb_seconds_bucket{route=\"/v1/jobs/{id}\",le=\"0.1\"} 1"));
  CHECK(has_line(page, "lb_seconds_bucket{route=\"/v1/jobs/{id}\",le=\"1\"} 3"));
  CHECK(has_line(page, "lb_seconds_bucket{route=\"/v1/jobs/{id}\",le=\"2.5\"} 3"));
  CHECK(has_line(page, "lb_seconds_bucket{route=\"/v1/jobs/{id}\",le=\"+Inf\"} 6"));
  CHECK(has_line(page, "lb_seconds_sum{route=\"/v1/jobs/{id}\"} 12.5"));
  CHECK(has_line(page, "lb_seconds_count{route=\"/v1/jobs/{id}\"} 6"));

  // Without labels, le is the only one.
  page.clear();
  out.histogram("lb_seconds", {}, {1}, {0, 0}, 0);
  CHECK(has_line(page, "lb_seconds_bucket{le=\"1\"} 0"));
  CHECK(has_line(page, "lb_seconds_bucket{le=\"+Inf\"} 0"));
  CHECK(has_line(page, "lb_seconds_count 0"));
}

TEST_CASE("metrics: requests are counted per route pattern and status, unmatched ones apart", "[metrics]") {
  http::Router router;
  auto ok = [](http::Request&) { return http::Response::text(200, "ok"); };
  router.add("GET", "/v1/jobs/{id}", ok);
  router.add("POST", "/v1/jobs", ok);
  router.add("GET", "/v1/jobs/export", ok);

  metrics::HttpMetrics counters;
  const auto* job = router.match("GET", "/v1/jobs/abc").route;
  REQUIRE(job);
  counters.record(job, 200, 0.001);  // not attached yet: ignored
  counters.attach(router);
  REQUIRE(router.match("GET", "/v1/jobs/abc").route == job);  // attaching moves nothing

  counters.record(job, 200, 0.0003);
  counters.record(job, 200, 0.003);
  counters.record(job, 404, 20.0);
  counters.record(router.match("POST", "/v1/jobs").route, 201, 0.01);
  counters.record(nullptr, 404, 0.0001);
  counters.record(nullptr, 405, 0.0001);
  counters.record(nullptr, 999, 0.0001);  // out of range: counted as 599

  std::string page;
  Writer out(page);
  counters.render(out);
  CHECK(has_line(page, "# TYPE labelbroker_http_requests_total counter"));
  CHECK(has_line(page, "labelbroker_http_requests_total{method=\"GET\",route=\"/v1/jobs/{id}\",status=\"200\"} 2"));
  CHECK(has_line(page, "labelbroker_http_requests_total{method=\"GET\",route=\"/v1/jobs/{id}\",status=\"404\"} 1"));
  CHECK(has_line(page, "labelbroker_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"201\"} 1"));
  CHECK(has_line(page, "labelbroker_http_requests_total{method=\"\",route=\"unmatched\",status=\"404\"} 1"));
  CHECK(has_line(page, "labelbroker_http_requests_total{method=\"\",route=\"unmatched\",status=\"405\"} 1"));
  CHECK(has_line(page, "labelbroker_http_requests_total{method=\"\",route=\"unmatched\",status=\"599\"} 1"));
  // A route never requested has no series; the raw path never appears.
  CHECK(page.find("/v1/jobs/export") == std::string::npos);
  CHECK(page.find("/v1/jobs/abc") == std::string::npos);

  CHECK(has_line(page, "# TYPE labelbroker_http_request_duration_seconds histogram"));
  const std::string job_labels = "method=\"GET\",route=\"/v1/jobs/{id}\"";
  CHECK(has_line(page, "labelbroker_http_request_duration_seconds_bucket{" + job_labels + ",le=\"0.0005\"} 1"));
  CHECK(has_line(page, "labelbroker_http_request_duration_seconds_bucket{" + job_labels + ",le=\"0.0025\"} 1"));
  CHECK(has_line(page, "labelbroker_http_request_duration_seconds_bucket{" + job_labels + ",le=\"0.005\"} 2"));
  CHECK(has_line(page, "labelbroker_http_request_duration_seconds_bucket{" + job_labels + ",le=\"10\"} 2"));
  CHECK(has_line(page, "labelbroker_http_request_duration_seconds_bucket{" + job_labels + ",le=\"+Inf\"} 3"));
  CHECK(has_line(page, "labelbroker_http_request_duration_seconds_count{" + job_labels + "} 3"));
  CHECK(has_line(page, "labelbroker_http_request_duration_seconds_sum{" + job_labels + "} 20.0033"));
}

TEST_CASE("metrics: process metrics come from /proc", "[metrics]") {
  std::string page;
  Writer out(page);
  metrics::render_process_metrics(out);
  CHECK(has_line(page, "# TYPE process_cpu_seconds_total counter"));
  CHECK(page.find("\nprocess_resident_memory_bytes ") != std::string::npos);
  CHECK(page.find("\nprocess_start_time_seconds 1") != std::string::npos);  // after 2001
  CHECK(page.find("\nprocess_open_fds ") != std::string::npos);
}

TEST_CASE("metrics: the config section", "[metrics]") {
  auto defaults = parse("{}");
  CHECK_FALSE(defaults.metrics.listen);
  CHECK_FALSE(defaults.metrics.require_key);
  CHECK(defaults.metrics.refresh == std::chrono::milliseconds(5000));

  auto set = parse(R"({"metrics": {"listen": "0.0.0.0:9464", "require_key": true, "refresh_ms": 250}})");
  REQUIRE(set.metrics.listen);
  CHECK(set.metrics.listen->host == "0.0.0.0");
  CHECK(set.metrics.listen->port == 9464);
  CHECK(set.metrics.require_key);
  CHECK(set.metrics.refresh == std::chrono::milliseconds(250));
  CHECK_FALSE(parse(R"({"metrics": {"listen": null}})").metrics.listen);

  CHECK_THROWS_WITH(parse(R"({"metrics": {"listen": "nowhere"}})"), Catch::Contains("$.metrics.listen"));
  CHECK_THROWS_WITH(parse(R"({"metrics": {"listen": 9464}})"), Catch::Contains("$.metrics.listen"));
  CHECK_THROWS_WITH(parse(R"({"metrics": {"require_key": "yes"}})"), Catch::Contains("$.metrics.require_key"));
  CHECK_THROWS_WITH(parse(R"({"metrics": {"refresh_ms": 10}})"), Catch::Contains("$.metrics.refresh_ms"));
  CHECK_THROWS_WITH(parse(R"({"metrics": {"path": "/m"}})"), Catch::Contains("$.metrics.path"));
}
