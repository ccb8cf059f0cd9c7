// HTTP behaviour of the real server, started in-process on a free port.
#include <csignal>
#include <atomic>
#include <future>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/except>

#include "config/config.hpp"
#include "support/http_client.hpp"
#include "support/test_server.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using std::chrono::milliseconds;

TEST_CASE("GET /healthz answers 200 with a request id", "[http]") {
  TestServer ts;
  ts.start();
  auto r = http_request(ts.port(), "GET", "/healthz");
  CHECK(r.status == 200);
  CHECK(nlohmann::json::parse(r.body)["status"] == "ok");
  CHECK(r.header("Content-Type") == "application/json");
  auto id = r.header("X-Request-Id");
  REQUIRE(id);
  CHECK(id->size() == 32);

  auto echoed = http_request(ts.port(), "GET", "/healthz", "", {{"X-Request-Id", "ci-run-42.step-7"}});
  CHECK(echoed.header("X-Request-Id") == "ci-run-42.step-7");
  // An id that could corrupt logs is replaced, not echoed.
  auto replaced = http_request(ts.port(), "GET", "/healthz", "", {{"X-Request-Id", "bad id\"{}"}});
  CHECK(replaced.header("X-Request-Id") != "bad id\"{}");
}

TEST_CASE("unknown paths and methods get problem+json 404 and 405", "[http]") {
  TestServer ts;
  ts.start();
  auto missing = http_request(ts.port(), "GET", "/v1/nothing-here");
  CHECK(missing.status == 404);
  CHECK(missing.header("Content-Type") == "application/problem+json");
  auto body = nlohmann::json::parse(missing.body);
  CHECK(body["status"] == 404);
  CHECK(body["type"] == "/problems/not-found");

  auto wrong = http_request(ts.port(), "DELETE", "/healthz");
  CHECK(wrong.status == 405);
  CHECK(wrong.header("Allow") == "GET, HEAD");

  auto head = http_request(ts.port(), "HEAD", "/healthz");
  CHECK(head.status == 200);
  CHECK(head.header("Content-Length") == "15");
  CHECK(head.body.empty());
}

TEST_CASE("a body over the limit gets 413 and Connection: close", "[http]") {
  auto options = test_server_options();
  options.body_limit_bytes = 8 * 1024 * 1024;
  TestServer ts(options);
  ts.router().add("POST", "/echo",
                  [](http::Request& req) { return http::Response::text(200, std::to_string(req.body.size())); });
  ts.start();

  SECTION("declared with Content-Length (9 MiB)") {
    auto r = http_request(ts.port(), "POST", "/echo", std::string(9 * 1024 * 1024, 'x'));
    CHECK(r.status == 413);
    CHECK(r.header("Connection") == "close");
    CHECK(nlohmann::json::parse(r.body)["type"] == "/problems/payload-too-large");
  }
  SECTION("sent chunked, so only discovered while reading") {
    RawConnection c(ts.port());
    REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
    const std::string chunk(1024 * 1024, 'y');
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
    for (int i = 0; i < 9; ++i) {
      if (!c.send(size_line + chunk + "\r\n")) break;  // the server may stop reading after the answer
    }
    auto raw = c.read_response();
    CHECK(status_of(raw) == 413);
    CHECK(raw.find("Connection: close") != std::string::npos);
  }
  SECTION("a body under the limit is accepted") {
    auto r = http_request(ts.port(), "POST", "/echo", std::string(1024 * 1024, 'x'));
    CHECK(r.status == 200);
    CHECK(r.body == std::to_string(1024 * 1024));
  }
}

TEST_CASE("a route's own body limit replaces the server's for that route only", "[http]") {
  auto options = test_server_options();
  options.body_limit_bytes = 64 * 1024;
  TestServer ts(options);
  auto echo = [](http::Request& req) { return http::Response::text(200, std::to_string(req.body.size())); };
  ts.router().add("POST", "/upload/{id}", echo, http::RouteOptions{http::Execution::worker, 1024 * 1024, {}});
  ts.router().add("POST", "/small", echo);
  ts.start();

  // Declared length: over the server's limit, under the route's.
  auto big = http_request(ts.port(), "POST", "/upload/1", std::string(512 * 1024, 'x'));
  CHECK(big.status == 200);
  CHECK(big.body == std::to_string(512 * 1024));
  auto too_big = http_request(ts.port(), "POST", "/upload/1", std::string(1024 * 1024 + 1, 'x'));
  CHECK(too_big.status == 413);
  CHECK(nlohmann::json::parse(too_big.body)["detail"] == "the request body is 1048577 bytes; the limit is 1048576");
  CHECK(http_request(ts.port(), "POST", "/small", std::string(512 * 1024, 'x')).status == 413);
  CHECK(http_request(ts.port(), "POST", "/nowhere", std::string(512 * 1024, 'x')).status == 413);

  // Chunked: the route's limit holds while the body is read.
  auto chunked = [&](const std::string& target, int chunks) {
    RawConnection c(ts.port());
    c.send("POST " + target + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    const std::string chunk(256 * 1024, 'y');
    for (int i = 0; i < chunks; ++i) {
      if (!c.send("40000\r\n" + chunk + "\r\n")) break;  // the server may stop reading after answering
    }
    c.send("0\r\n\r\n");
    return status_of(c.read_response());
  };
  CHECK(chunked("/upload/2", 3) == 200);
  CHECK(chunked("/upload/2", 5) == 413);
  CHECK(chunked("/small", 1) == 413);
  CHECK(http_request(ts.port(), "GET", "/healthz").status == 200);
}

TEST_CASE("malformed requests get 400 and the server keeps serving", "[http]") {
  TestServer ts;
  ts.start();
  for (const std::string bad : {"this is not http\r\n\r\n", "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
                                "GET /healthz HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "GET\r\n\r\n"}) {
    RawConnection c(ts.port());
    REQUIRE(c.send(bad));
    auto raw = c.read_response();
    INFO(bad);
    CHECK(status_of(raw) == 400);
    CHECK(raw.find("application/problem+json") != std::string::npos);
  }
  RawConnection bad_path(ts.port());
  REQUIRE(bad_path.send("GET /v1/%zz HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(status_of(bad_path.read_response()) == 400);
  CHECK(http_request(ts.port(), "GET", "/healthz").status == 200);
}

TEST_CASE("oversized headers get 431", "[http]") {
  TestServer ts;
  ts.start();
  RawConnection c(ts.port());
  REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n"));
  CHECK(status_of(c.read_response()) == 431);
}

TEST_CASE("slow clients are cut off by the timeouts", "[http]") {
  auto options = test_server_options();
  options.header_timeout = milliseconds(300);
  options.body_timeout = milliseconds(300);
  options.idle_timeout = milliseconds(300);
  TestServer ts(options);
  ts.router().add("POST", "/echo", [](http::Request& req) { return http::Response::text(200, req.body); });
  ts.start();

  SECTION("a header that never ends") {
    RawConnection c(ts.port());
    REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n"));
    auto rest = c.read_until_close();
    CHECK_FALSE(c.timed_out());  // the server closed it; our 30 s guard did not fire
    CHECK(rest.empty());
  }
  SECTION("a body that never arrives") {
    RawConnection c(ts.port());
    REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part"));
    c.read_until_close();
    CHECK_FALSE(c.timed_out());
  }
  SECTION("an idle keep-alive connection") {
    RawConnection c(ts.port());
    REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    CHECK(status_of(c.read_response()) == 200);
    c.read_until_close();
    CHECK_FALSE(c.timed_out());
  }
  CHECK(http_request(ts.port(), "GET", "/healthz").status == 200);
}

TEST_CASE("keep-alive serves several requests, pipelined too, and honours 100-continue", "[http]") {
  TestServer ts;
  ts.router().add("POST", "/echo", [](http::Request& req) { return http::Response::text(200, req.body); });
  ts.start();
  RawConnection c(ts.port());
  REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(status_of(c.read_response()) == 200);
  CHECK(status_of(c.read_response()) == 200);

  REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  CHECK(status_of(c.read_response()) == 100);
  REQUIRE(c.send("hello"));
  auto echoed = c.read_response();
  CHECK(status_of(echoed) == 200);
  CHECK(echoed.substr(echoed.size() - 5) == "hello");
}

namespace {

// Counts up in decimal lines: a body whose every byte is predictable, produced in small pieces.
class CountingBody final : public http::BodySource {
 public:
  CountingBody(std::uint64_t length, bool fail_midway) : length_(length), fail_midway_(fail_midway) {}
  static std::string expected(std::uint64_t length) {
    std::string all;
    for (int i = 0; all.size() < length; ++i) all += std::to_string(i) + "\n";
    all.resize(length);
    return all;
  }
  std::uint64_t length() const override { return length_; }
  bool next(std::string& out, std::size_t max_bytes) override {
    if (fail_midway_ && sent_ > length_ / 2) throw std::runtime_error("storage went away");
    const auto all = expected(length_);
    const auto n = std::min<std::uint64_t>(std::min<std::size_t>(max_bytes, 100000), length_ - sent_);
    out += all.substr(sent_, n);
    sent_ += n;
    ++pieces;
    return sent_ < length_;
  }
  int pieces = 0;

 private:
  std::uint64_t length_;
  bool fail_midway_;
  std::uint64_t sent_ = 0;
};

}  // namespace

TEST_CASE("a streamed body arrives whole with its Content-Length, keep-alive goes on, a failure cuts it short",
          "[http]") {
  TestServer ts;
  static constexpr std::uint64_t kLength = 450000;
  ts.router().add("GET", "/stream", [](http::Request&) {
    http::Response r;
    r.headers.set("Content-Type", "text/plain");
    r.source = std::make_shared<CountingBody>(kLength, false);
    return r;
  });
  ts.router().add("GET", "/broken", [](http::Request&) {
    http::Response r;
    r.source = std::make_shared<CountingBody>(kLength, true);
    return r;
  });
  ts.start();
  RawConnection c(ts.port());
  REQUIRE(c.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  const auto raw = c.read_response();
  REQUIRE(status_of(raw) == 200);
  CHECK(raw.find("Content-Length: " + std::to_string(kLength) + "\r\n") != std::string::npos);
  CHECK(raw.substr(raw.find("\r\n\r\n") + 4) == CountingBody::expected(kLength));
  // The same connection serves the next request.
  REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(status_of(c.read_response()) == 200);
  // HEAD: the head only.
  REQUIRE(c.send("HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  const auto head = c.read_response();
  CHECK(head.find("Content-Length: " + std::to_string(kLength)) != std::string::npos);

  // A source that fails after the head was sent: the connection is cut, so the client sees fewer
  // bytes than Content-Length promised (never a complete-looking body); the server goes on.
  RawConnection broken(ts.port());
  REQUIRE(broken.send("GET /broken HTTP/1.1\r\nHost: x\r\n\r\n"));
  const auto cut = broken.read_until_close();
  CHECK_FALSE(broken.timed_out());
  CHECK(status_of(cut) == 200);
  CHECK(cut.size() - (cut.find("\r\n\r\n") + 4) < kLength);
  CHECK(http_request(ts.port(), "GET", "/healthz").status == 200);
}

TEST_CASE("a handler that throws gives a 500 problem and the server keeps serving", "[http]") {
  TestServer ts;
  ts.router().add("GET", "/boom", [](http::Request&) -> http::Response { throw std::runtime_error("kaput"); });
  ts.start();
  auto r = http_request(ts.port(), "GET", "/boom");
  CHECK(r.status == 500);
  auto body = nlohmann::json::parse(r.body);
  CHECK(body["detail"].get<std::string>().find(*r.header("X-Request-Id")) != std::string::npos);
  CHECK(body["detail"].get<std::string>().find("kaput") == std::string::npos);  // internals stay in the log
  CHECK(http_request(ts.port(), "GET", "/healthz").status == 200);
}

TEST_CASE("/readyz reports an unreachable database as 503 with the reason", "[http]") {
  TestServer ts;
  ts.start();
  auto r = http_request(ts.port(), "GET", "/readyz");
  CHECK(r.status == 503);
  CHECK(r.header("Content-Type") == "application/problem+json");
  CHECK(nlohmann::json::parse(r.body)["detail"] == "cannot connect to the database");
  CHECK(http_request(ts.port(), "GET", "/healthz").status == 200);
}

namespace {

// Lets a test hold a request inside its handler until it chooses to release it.
struct Gate {
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
};

}  // namespace

TEST_CASE("SIGTERM during a slow request lets it finish, then the server stops", "[http][signals]") {
  auto options = test_server_options();
  options.drain_delay = milliseconds(0);
  TestServer ts(options);
  Gate gate;
  ts.router().add("GET", "/slow", [&gate](http::Request&) {
    gate.entered.set_value();
    gate.released.wait();
    return http::Response::text(200, "finished");
  });
  ts.start();
  ts.server().handle_signals();

  auto client = std::async(std::launch::async, [&] { return http_request(ts.port(), "GET", "/slow"); });
  gate.entered.get_future().wait();
  REQUIRE(::kill(::getpid(), SIGTERM) == 0);

  // The signal is handled on an I/O thread; the server then refuses new connections.
  for (int i = 0; i < 500 && !ts.lifecycle().draining; ++i) std::this_thread::sleep_for(milliseconds(10));
  REQUIRE(ts.lifecycle().draining);
  auto stopped = std::async(std::launch::async, [&] { return ts.server().wait(); });
  CHECK(stopped.wait_for(milliseconds(300)) == std::future_status::timeout);  // still waiting for /slow

  gate.release.set_value();
  auto r = client.get();
  CHECK(r.status == 200);
  CHECK(r.body == "finished");
  CHECK(r.header("Connection") == "close");
  CHECK(stopped.get() == true);  // every request in flight finished
}

TEST_CASE("while draining, /readyz answers 503 and new requests are told to close", "[http]") {
  auto options = test_server_options();
  options.drain_delay = milliseconds(200);
  TestServer ts(options);
  ts.start();
  CHECK(http_request(ts.port(), "GET", "/healthz").header("Connection") != "close");
  ts.server().begin_shutdown();
  auto r = http_request(ts.port(), "GET", "/readyz");
  CHECK(r.status == 503);
  CHECK(nlohmann::json::parse(r.body)["detail"] == "shutting down");
  CHECK(r.header("Connection") == "close");
  CHECK(ts.server().wait());
  CHECK_THROWS(http_request(ts.port(), "GET", "/healthz"));  // listener closed
}

TEST_CASE("database failures escaping a handler become precise problems, not 500s", "[http]") {
  TestServer ts;  // with the production exception mapping
  ts.router().add("POST", "/dup", [](http::Request&) -> http::Response {
    throw pqxx::unique_violation("duplicate key value violates unique constraint", "INSERT", "23505");
  });
  ts.router().add("POST", "/contention", [](http::Request&) -> http::Response {
    throw pqxx::serialization_failure("could not serialize access");
  });
  ts.router().add("GET", "/bug", [](http::Request&) -> http::Response { throw std::logic_error("bug"); });
  ts.start();

  auto dup = http_request(ts.port(), "POST", "/dup");
  CHECK(dup.status == 409);
  CHECK(nlohmann::json::parse(dup.body)["type"] == "/problems/conflict");
  CHECK(dup.body.find("duplicate key") == std::string::npos);  // no SQL internals in responses

  auto busy = http_request(ts.port(), "POST", "/contention");
  CHECK(busy.status == 503);
  CHECK(busy.header("Retry-After") == "1");

  CHECK(http_request(ts.port(), "GET", "/bug").status == 500);
}


TEST_CASE("a worker route's fast path answers on the I/O thread, or hands the request on to the worker pool",
          "[http]") {
  TestServer ts;
  std::atomic<int> slow_calls{0};
  const auto io_thread_id = std::make_shared<std::thread::id>();
  http::RouteOptions options;
  options.fast = [io_thread_id](http::Request& req) -> std::optional<http::Response> {
    *io_thread_id = std::this_thread::get_id();
    if (req.query_param("mode") == std::optional<std::string_view>("fast")) return http::Response::text(200, "fast");
    if (req.query_param("mode") == std::optional<std::string_view>("throw")) throw std::runtime_error("broken");
    return std::nullopt;
  };
  const auto worker_thread_id = std::make_shared<std::thread::id>();
  ts.router().add("GET", "/view",
                  [&slow_calls, worker_thread_id](http::Request&) {
                    ++slow_calls;
                    *worker_thread_id = std::this_thread::get_id();
                    return http::Response::text(200, "slow");
                  },
                  options);
  ts.start();

  auto fast = http_request(ts.port(), "GET", "/view?mode=fast");
  CHECK(fast.status == 200);
  CHECK(fast.body == "fast");
  CHECK(slow_calls == 0);
  CHECK(fast.header("X-Request-Id").has_value());  // still a normal response of this server

  auto miss = http_request(ts.port(), "GET", "/view");
  CHECK(miss.body == "slow");
  CHECK(slow_calls == 1);
  CHECK(*worker_thread_id != *io_thread_id);  // the slow path ran on a worker, not the I/O thread

  auto broken = http_request(ts.port(), "GET", "/view?mode=throw");
  CHECK(broken.status == 200);
  CHECK(broken.body == "slow");
  CHECK(slow_calls == 2);

  // A fast path belongs to worker routes only.
  http::RouteOptions inline_fast;
  inline_fast.execution = http::Execution::io_thread;
  inline_fast.fast = options.fast;
  CHECK_THROWS_AS(ts.router().add("GET", "/inline", [](http::Request&) { return http::Response::text(200, ""); },
                                  inline_fast),
                  std::invalid_argument);
}
