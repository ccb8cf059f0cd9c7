// The shared vendor HTTP client against a real HTTP server started in-process.
#include "vendors/common/http_client.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <thread>

#include "common/crypto.hpp"
#include "support/process.hpp"
#include "support/test_server.hpp"

using namespace labelbroker;
using namespace labelbroker::vendors;
using std::chrono::milliseconds;

namespace {

HttpClientOptions fast_options() {
  HttpClientOptions o;
  o.request_timeout = milliseconds(2000);
  o.retry.max_attempts = 3;
  o.retry.initial_backoff = milliseconds(5);
  o.retry.max_backoff = milliseconds(20);
  return o;
}

std::string url(const testing::TestServer& ts, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(ts.port()) + path;
}

}  // namespace

TEST_CASE("vendor client: GET and POST with headers and bodies", "[vendor-client]") {
  testing::TestServer ts;
  ts.router().add("POST", "/echo", [](http::Request& req) {
    http::Response r = http::Response::json(201, req.body);
    r.headers.set("X-Seen-Auth", std::string(req.header("Authorization").value_or("")));
    return r;
  });
  ts.start();
  HttpRuntime runtime;
  HttpClient client(runtime, fast_options());

  auto get = client.send_sync({"GET", url(ts, "/healthz"), {}, "", true});
  REQUIRE(get.has_response());
  CHECK(get.response->status == 200);
  CHECK(get.response->body == R"({"status":"ok"})");
  CHECK(get.attempts == 1);

  auto post = client.send_sync({"POST", url(ts, "/echo"), {{"Authorization", "Basic abc"}, {"Content-Type", "application/json"}}, R"({"a":1})", false});
  REQUIRE(post.has_response());
  CHECK(post.response->status == 201);
  CHECK(post.response->body == R"({"a":1})");
  CHECK(post.response->header("x-seen-auth") == std::optional<std::string_view>("Basic abc"));
}

TEST_CASE("vendor client: keep-alive connections are reused", "[vendor-client]") {
  testing::TestServer ts;
  ts.start();
  HttpRuntime runtime;
  HttpClient client(runtime, fast_options());
  for (int i = 0; i < 20; ++i) REQUIRE(client.send_sync({"GET", url(ts, "/healthz"), {}, "", true}).response->status == 200);
  CHECK(client.stats().connections_opened == 1);
  CHECK(client.stats().connections_reused == 19);
}

TEST_CASE("vendor client: 5xx and 429 are retried for retry-safe requests only", "[vendor-client]") {
  testing::TestServer ts;
  std::atomic<int> calls{0};
  ts.router().add("GET", "/flaky", [&](http::Request&) {
    return ++calls < 3 ? http::Response::json(503, R"({"error":"busy"})") : http::Response::json(200, R"({"ok":true})");
  });
  ts.router().add("POST", "/always-503", [&](http::Request&) { ++calls; return http::Response::json(503, "{}"); });
  ts.start();
  HttpRuntime runtime;
  HttpClient client(runtime, fast_options());

  auto flaky = client.send_sync({"GET", url(ts, "/flaky"), {}, "", true});
  CHECK(flaky.response->status == 200);
  CHECK(flaky.attempts == 3);

  calls = 0;
  auto unsafe = client.send_sync({"POST", url(ts, "/always-503"), {}, "{}", false});
  CHECK(unsafe.response->status == 503);
  CHECK(unsafe.attempts == 1);
  CHECK(calls == 1);

  calls = 0;
  auto safe = client.send_sync({"POST", url(ts, "/always-503"), {}, "{}", true});
  CHECK(safe.response->status == 503);  // the last answer, after the attempts ran out
  CHECK(safe.attempts == 3);
  CHECK(calls == 3);
}

TEST_CASE("vendor client: Retry-After is honoured, and a long one is handed back", "[vendor-client]") {
  testing::TestServer ts;
  std::atomic<int> calls{0};
  ts.router().add("GET", "/limited", [&](http::Request&) {
    http::Response r = http::Response::json(++calls == 1 ? 429 : 200, "{}");
    if (calls == 1) r.headers.set("Retry-After", "1");
    return r;
  });
  ts.router().add("GET", "/limited-long", [&](http::Request&) {
    http::Response r = http::Response::json(429, "{}");
    r.headers.set("Retry-After", "120");
    return r;
  });
  ts.start();
  HttpRuntime runtime;
  HttpClient client(runtime, fast_options());

  const auto started = std::chrono::steady_clock::now();
  auto limited = client.send_sync({"GET", url(ts, "/limited"), {}, "", true});
  CHECK(limited.response->status == 200);
  CHECK(limited.attempts == 2);
  // Waited out the second the vendor asked for (a lower bound, not a speed check).
  CHECK(std::chrono::steady_clock::now() - started >= milliseconds(1000));

  auto long_wait = client.send_sync({"GET", url(ts, "/limited-long"), {}, "", true});
  CHECK(long_wait.response->status == 429);
  CHECK(long_wait.attempts == 1);
  CHECK(parse_retry_after(*long_wait.response->header("Retry-After")) == milliseconds(120000));
}

TEST_CASE("vendor client: a vendor that does not answer times out, without hanging the caller", "[vendor-client]") {
  testing::TestServer ts;
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  ts.router().add("GET", "/hang", [&](http::Request&) {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return release; });
    return http::Response::json(200, "{}");
  });
  ts.start();
  HttpRuntime runtime;
  auto options = fast_options();
  options.request_timeout = milliseconds(200);
  options.retry.max_attempts = 2;
  HttpClient client(runtime, options);
  auto outcome = client.send_sync({"GET", url(ts, "/hang"), {}, "", true});
  CHECK_FALSE(outcome.has_response());
  CHECK(outcome.failure == TransportFailure::timeout);
  CHECK(outcome.attempts == 2);
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
}

TEST_CASE("vendor client: requests in flight are capped per client", "[vendor-client]") {
  testing::TestServer ts;
  std::atomic<int> now{0}, peak{0};
  ts.router().add("GET", "/slowish", [&](http::Request&) {
    int current = ++now;
    int seen = peak.load();
    while (current > seen && !peak.compare_exchange_weak(seen, current)) {
    }
    std::this_thread::sleep_for(milliseconds(30));
    --now;
    return http::Response::json(200, "{}");
  });
  ts.start();
  HttpRuntime runtime;
  auto options = fast_options();
  options.max_in_flight = 2;
  HttpClient client(runtime, options);
  std::vector<std::future<HttpOutcome>> futures;
  for (int i = 0; i < 10; ++i) futures.push_back(client.send({"GET", url(ts, "/slowish"), {}, "", true}));
  for (auto& f : futures) CHECK(f.get().response->status == 200);
  CHECK(peak.load() == 2);
}

TEST_CASE("vendor client: transport failures are classified", "[vendor-client]") {
  HttpRuntime runtime;
  auto options = fast_options();
  options.retry.max_attempts = 1;
  HttpClient client(runtime, options);
  CHECK(client.send_sync({"GET", "ftp://example.com/", {}, "", true}).failure == TransportFailure::bad_url);
  CHECK(client.send_sync({"GET", "http://user:pw@example.com/", {}, "", true}).failure == TransportFailure::bad_url);
  CHECK(client.send_sync({"GET", "http://127.0.0.1:1/", {}, "", true}).failure == TransportFailure::connect);

  testing::TestServer ts;
  ts.router().add("GET", "/big", [](http::Request&) { return http::Response::text(200, std::string(2 * 1024 * 1024, 'x')); });
  ts.router().add("GET", "/small", [](http::Request&) { return http::Response::text(200, std::string(1000, 'x')); });
  ts.start();
  options.max_response_bytes = 1024 * 1024;
  HttpClient small(runtime, options);
  auto big = small.send_sync({"GET", url(ts, "/big"), {}, "", true});
  INFO("status " << (big.response ? big.response->status : 0) << " error " << big.error);
  CHECK(big.failure == TransportFailure::too_large);
  CHECK(small.send_sync({"GET", url(ts, "/small"), {}, "", true}).response->body.size() == 1000);
}

TEST_CASE("vendor client: https with certificate and host name verification", "[vendor-client][tls]") {
  // A real TLS peer: openssl s_server with a certificate made for 127.0.0.1 only.
  const std::string dir = std::filesystem::temp_directory_path() / ("lb-tls-" + common::random_hex(4));
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  auto made = testing::run_process({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                                    dir + "/key.pem", "-out", dir + "/cert.pem"});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  const auto port = testing::free_port();
  testing::ChildProcess server({"/usr/bin/openssl", "s_server", "-quiet", "-accept", std::to_string(port), "-cert",
                                dir + "/cert.pem", "-key", dir + "/key.pem", "-www"});
  HttpRuntime runtime;
  auto options = fast_options();
  options.ca_file = dir + "/cert.pem";
  options.retry.max_attempts = 1;
  HttpClient trusting(runtime, options);
  const std::string target = "https://127.0.0.1:" + std::to_string(port) + "/";
  HttpOutcome ok;
  for (int i = 0; i < 100; ++i) {  // until s_server listens (bounded)
    ok = trusting.send_sync({"GET", target, {}, "", true});
    if (ok.failure != TransportFailure::connect) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  INFO(ok.error);
  REQUIRE(ok.has_response());
  CHECK(ok.response->status == 200);
  CHECK(ok.response->body.find("s_server") != std::string::npos);

  // Without trusting the certificate, the handshake must fail.
  auto untrusted_options = fast_options();
  untrusted_options.retry.max_attempts = 1;
  HttpClient untrusting(runtime, untrusted_options);
  CHECK(untrusting.send_sync({"GET", target, {}, "", true}).failure == TransportFailure::tls);

  // Trusted certificate, wrong name: "localhost" is not in it.
  auto wrong_name = trusting.send_sync({"GET", "https://localhost:" + std::to_string(port) + "/", {}, "", true});
  CHECK(wrong_name.failure == TransportFailure::tls);
}
