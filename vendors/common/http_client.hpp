#pragma once
// The HTTP client every vendor adapter uses: asynchronous (Beast over Asio, TLS through OpenSSL for
// https URLs), keep-alive connection reuse per origin, a timeout per attempt, retries with
// exponential backoff and full jitter that honour Retry-After, and a cap on requests in flight per
// client (one client per vendor).
//
// Threading: all network work runs on the HttpRuntime's single I/O thread, never on the broker's
// HTTP server threads. send() may be called from any thread; it returns a future. Callers that block
// on the future must not be the runtime's own thread (adapters run on worker threads).
// Beast and Asio stay in http_client.cpp.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace labelbroker::vendors {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct OutboundRequest {
  std::string method = "GET";
  std::string url;  // absolute: http://host:port/path?query or https://...
  HeaderList headers;
  std::string body;
  // True when sending the request twice cannot create two effects (GET, or a create that carries
  // an idempotency key). Only such requests are retried after an uncertain failure.
  bool retry_safe = true;
};

struct InboundResponse {
  int status = 0;
  HeaderList headers;
  std::string body;
  std::optional<std::string_view> header(std::string_view name) const;
};

enum class TransportFailure { none, bad_url, resolve, connect, tls, timeout, io, too_large, shutdown };
std::string_view to_string(TransportFailure f);

struct HttpOutcome {
  std::optional<InboundResponse> response;  // the last response received, if any
  TransportFailure failure = TransportFailure::none;
  std::string error;  // for logs; never contains credentials
  int attempts = 0;
  bool has_response() const { return response.has_value(); }
};

struct RetryPolicy {
  int max_attempts = 3;  // 1 disables retries
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  // A Retry-After longer than this is not waited out; the 429/503 is returned to the caller.
  std::chrono::milliseconds max_retry_after{10000};
};

struct HttpClientOptions {
  std::size_t max_in_flight = 32;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds request_timeout{10000};  // per attempt: write + read of one exchange
  std::size_t max_response_bytes = 16 * 1024 * 1024;
  std::size_t max_idle_per_origin = 64;
  RetryPolicy retry;
  std::string ca_file;  // extra trusted CA (PEM), e.g. a test certificate; system CAs are always trusted
  bool verify_tls = true;
  std::string user_agent = "labelbroker";
};

struct HttpClientStats {
  std::uint64_t requests = 0;  // send() calls completed
  std::uint64_t attempts = 0;
  std::uint64_t connections_opened = 0;
  std::uint64_t connections_reused = 0;
  std::size_t in_flight = 0;
  std::size_t queued = 0;
};

// Owns the I/O thread shared by all vendor clients.
class HttpRuntime {
 public:
  HttpRuntime();
  ~HttpRuntime();  // stops the thread; outstanding requests complete with TransportFailure::shutdown
  HttpRuntime(const HttpRuntime&) = delete;
  HttpRuntime& operator=(const HttpRuntime&) = delete;
  class Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

class HttpClient {
 public:
  // Throws std::runtime_error if the TLS settings are unusable (e.g. unreadable ca_file).
  HttpClient(HttpRuntime& runtime, HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  std::future<HttpOutcome> send(OutboundRequest request);
  HttpOutcome send_sync(OutboundRequest request) { return send(std::move(request)).get(); }

  HttpClientStats stats() const;
  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Parses Retry-After as delta-seconds (HTTP-dates are rare from APIs and treated as absent).
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value);

}  // namespace labelbroker::vendors
