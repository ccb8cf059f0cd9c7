#include "vendors/common/http_client.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <random>
#include <thread>
#include <unordered_map>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>

#include "common/backoff.hpp"
#include "common/strings.hpp"

namespace labelbroker::vendors {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

namespace {

struct ParsedUrl {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;  // path and query
  std::string origin;  // scheme://host:port, the key for connection reuse
};

std::optional<ParsedUrl> parse_url(std::string_view url) {
  ParsedUrl out;
  if (url.rfind("http://", 0) == 0) {
    url.remove_prefix(7);
  } else if (url.rfind("https://", 0) == 0) {
    out.tls = true;
    url.remove_prefix(8);
  } else {
    return std::nullopt;
  }
  const auto slash = url.find_first_of("/?");
  std::string_view authority = url.substr(0, slash);
  out.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (!out.target.empty() && out.target.front() == '?') out.target.insert(0, "/");
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  std::string_view port;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return std::nullopt;
      port = authority.substr(close + 2);
    }
  } else {
    const auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) return std::nullopt;
  if (port.empty()) {
    out.port = out.tls ? "443" : "80";
  } else {
    if (port.find_first_not_of("0123456789") != std::string_view::npos || port.size() > 5) return std::nullopt;
    out.port = std::string(port);
  }
  out.origin = std::string(out.tls ? "https://" : "http://") + out.host + ":" + out.port;
  return out;
}

bool retryable_status(int status) {
  return status == 408 || status == 429 || status >= 500;
}

}  // namespace

std::optional<std::string_view> InboundResponse::header(std::string_view name) const {
  return common::find_field(headers, name);
}

std::string_view to_string(TransportFailure f) {
  switch (f) {
    case TransportFailure::none:
      return "none";
    case TransportFailure::bad_url:
      return "bad_url";
    case TransportFailure::resolve:
      return "resolve";
    case TransportFailure::connect:
      return "connect";
    case TransportFailure::tls:
      return "tls";
    case TransportFailure::timeout:
      return "timeout";
    case TransportFailure::io:
      return "io";
    case TransportFailure::too_large:
      return "too_large";
    case TransportFailure::shutdown:
      return "shutdown";
  }
  return "io";
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty() || value.size() > 9 || value.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  return std::chrono::seconds(std::stoll(std::string(value)));
}

// ---------------------------------------------------------------------------------------------
// Runtime: one io_context, one thread. Every client's state is touched only on that thread.

class HttpRuntime::Impl {
 public:
  Impl() : guard_(net::make_work_guard(ioc_)), thread_([this] { ioc_.run(); }) {}
  ~Impl() {
    guard_.reset();
    ioc_.stop();
    thread_.join();
  }
  net::io_context& ioc() { return ioc_; }

 private:
  net::io_context ioc_{1};
  net::executor_work_guard<net::io_context::executor_type> guard_;
  std::thread thread_;
};

HttpRuntime::HttpRuntime() : impl_(std::make_unique<Impl>()) {}
HttpRuntime::~HttpRuntime() = default;

// ---------------------------------------------------------------------------------------------

namespace {

struct Connection {
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;

  beast::tcp_stream& tcp() { return plain ? *plain : beast::get_lowest_layer(*tls); }
  bool is_open() { return tcp().socket().is_open(); }
  template <typename Fn>
  void with_stream(Fn&& fn) {
    if (plain)
      fn(*plain);
    else
      fn(*tls);
  }
};

}  // namespace

class Exchange;

class HttpClient::Impl : public std::enable_shared_from_this<HttpClient::Impl> {
 public:
  Impl(HttpRuntime::Impl& runtime, HttpClientOptions options)
      : runtime_(runtime), options_(std::move(options)), ssl_(ssl::context::tls_client), resolver_(runtime.ioc()) {
    ssl_.set_default_verify_paths();
    if (!options_.ca_file.empty()) {
      beast::error_code ec;
      ssl_.load_verify_file(options_.ca_file, ec);
      if (ec) throw std::runtime_error("cannot load CA file " + options_.ca_file + ": " + ec.message());
    }
    ssl_.set_verify_mode(options_.verify_tls ? ssl::verify_peer : ssl::verify_none);
    if (options_.max_in_flight == 0) options_.max_in_flight = 1;
    if (options_.retry.max_attempts < 1) options_.retry.max_attempts = 1;
  }

  void submit(std::shared_ptr<Exchange> exchange);
  void finished();
  std::unique_ptr<Connection> take_idle(const std::string& origin);
  void give_back(const std::string& origin, std::unique_ptr<Connection> connection);
  std::chrono::milliseconds backoff(int attempt);

  net::io_context& ioc() { return runtime_.ioc(); }
  const HttpClientOptions& options() const { return options_; }
  ssl::context& ssl_context() { return ssl_; }
  tcp::resolver& resolver() { return resolver_; }

  std::atomic<std::uint64_t> requests{0}, attempts{0}, opened{0}, reused{0};
  std::atomic<std::size_t> in_flight_count{0}, queued_count{0};

 private:
  HttpRuntime::Impl& runtime_;
  HttpClientOptions options_;
  ssl::context ssl_;
  tcp::resolver resolver_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;
  std::deque<std::shared_ptr<Exchange>> queue_;
  std::size_t in_flight_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

// One request, through all of its attempts. Lives on the runtime thread.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(std::shared_ptr<HttpClient::Impl> client, OutboundRequest request, ParsedUrl url)
      : client_(std::move(client)), request_(std::move(request)), url_(std::move(url)), timer_(client_->ioc()) {}

  ~Exchange() {
    // Destroyed without completing: the runtime is shutting down.
    if (!done_) {
      outcome_.failure = TransportFailure::shutdown;
      outcome_.error = "HTTP runtime stopped";
      promise_.set_value(std::move(outcome_));
    }
  }

  std::future<HttpOutcome> future() { return promise_.get_future(); }

  void start() {
    ++outcome_.attempts;
    ++client_->attempts;
    connection_ = client_->take_idle(url_.origin);
    reused_ = connection_ != nullptr;
    if (reused_) {
      ++client_->reused;
      return write();
    }
    resolve();
  }

 private:
  void resolve() {
    client_->resolver().async_resolve(
        url_.host, url_.port, [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
          if (ec)
            return self->fail(TransportFailure::resolve, "cannot resolve " + self->url_.host + ": " + ec.message());
          self->connect(results);
        });
  }

  void connect(const tcp::resolver::results_type& results) {
    connection_ = std::make_unique<Connection>();
    if (url_.tls)
      connection_->tls.emplace(client_->ioc(), client_->ssl_context());
    else
      connection_->plain.emplace(client_->ioc());
    ++client_->opened;
    connection_->tcp().expires_after(client_->options().connect_timeout);
    connection_->tcp().async_connect(results, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
      if (ec == beast::error::timeout) return self->fail(TransportFailure::timeout, "connect timed out");
      if (ec)
        return self->fail(TransportFailure::connect, "cannot connect to " + self->url_.origin + ": " + ec.message());
      beast::error_code nodelay_ec;
      self->connection_->tcp().socket().set_option(tcp::no_delay(true), nodelay_ec);
      if (self->url_.tls) return self->handshake();
      self->write();
    });
  }

  void handshake() {
    auto& stream = *connection_->tls;
    // SNI, and the certificate must name the host we asked for.
    if (!SSL_set_tlsext_host_name(stream.native_handle(), url_.host.c_str()))
      return fail(TransportFailure::tls, "cannot set TLS server name");
    if (client_->options().verify_tls) stream.set_verify_callback(ssl::host_name_verification(url_.host));
    connection_->tcp().expires_after(client_->options().connect_timeout);
    stream.async_handshake(ssl::stream_base::client, [self = shared_from_this()](beast::error_code ec) {
      if (ec == beast::error::timeout) return self->fail(TransportFailure::timeout, "TLS handshake timed out");
      if (ec)
        return self->fail(TransportFailure::tls,
                          "TLS handshake with " + self->url_.origin + " failed: " + ec.message());
      self->write();
    });
  }

  void write() {
    http_request_ = {};
    http_request_.method_string(request_.method);
    http_request_.target(url_.target);
    http_request_.version(11);
    http_request_.set(bhttp::field::host, url_.host);
    http_request_.set(bhttp::field::user_agent, client_->options().user_agent);
    for (const auto& [name, value] : request_.headers) http_request_.set(name, value);
    http_request_.body() = request_.body;
    http_request_.keep_alive(true);
    http_request_.prepare_payload();
    connection_->tcp().expires_after(client_->options().request_timeout);
    connection_->with_stream([&](auto& stream) {
      bhttp::async_write(stream, http_request_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
        if (ec) return self->on_io_error(ec, /*nothing_received=*/true);
        self->read();
      });
    });
  }

  void read() {
    parser_.emplace();
    parser_->body_limit(client_->options().max_response_bytes);
    connection_->with_stream([&](auto& stream) {
      bhttp::async_read_header(stream, connection_->buffer, *parser_,
                               [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                 if (ec) return self->on_read_error(ec);
                                 self->read_body();
                               });
    });
  }

  void read_body() {
    // Beast 1.74 does not apply body_limit to a declared Content-Length (only to chunks), so the
    // declared length is checked here, before any of the body is read.
    if (auto length = parser_->content_length(); length && *length > client_->options().max_response_bytes)
      return fail(TransportFailure::too_large, "response of " + std::to_string(*length) + " bytes is over the limit");
    connection_->with_stream([&](auto& stream) {
      bhttp::async_read(stream, connection_->buffer, *parser_,
                        [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          if (ec) return self->on_read_error(ec);
                          self->on_response();
                        });
    });
  }

  void on_read_error(beast::error_code ec) {
    if (ec == bhttp::error::body_limit)
      return fail(TransportFailure::too_large, "response larger than the configured limit");
    on_io_error(ec, !parser_->got_some());
  }

  void on_io_error(beast::error_code ec, bool nothing_received) {
    // A kept-alive connection the server has closed meanwhile fails before any answer: the server
    // never saw the request, so a fresh connection may be tried at once, whatever the method.
    if (reused_ && nothing_received && ec != beast::error::timeout) {
      connection_.reset();
      reused_ = false;
      --outcome_.attempts;
      return start();
    }
    if (ec == beast::error::timeout) return fail(TransportFailure::timeout, "no answer within the request timeout");
    fail(TransportFailure::io, "connection failed: " + ec.message());
  }

  void on_response() {
    auto& res = parser_->get();
    InboundResponse response;
    response.status = static_cast<int>(res.result_int());
    for (const auto& field : res)
      response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    response.body = std::move(res.body());
    if (res.keep_alive()) client_->give_back(url_.origin, std::move(connection_));
    connection_.reset();

    if (retryable_status(response.status) && may_retry()) {
      std::chrono::milliseconds delay = client_->backoff(outcome_.attempts);
      if (auto header = response.header("Retry-After")) {
        if (auto after = parse_retry_after(*header)) {
          if (*after > client_->options().retry.max_retry_after) return complete(std::move(response));
          delay = *after;
        }
      }
      outcome_.response = std::move(response);
      return retry_after(delay);
    }
    complete(std::move(response));
  }

  bool may_retry() const { return request_.retry_safe && outcome_.attempts < client_->options().retry.max_attempts; }

  void fail(TransportFailure failure, std::string error) {
    connection_.reset();
    outcome_.failure = failure;
    outcome_.error = std::move(error);
    outcome_.response.reset();
    const bool transient = failure != TransportFailure::bad_url && failure != TransportFailure::too_large &&
                           failure != TransportFailure::tls;
    if (transient && may_retry()) return retry_after(client_->backoff(outcome_.attempts));
    finish();
  }

  void retry_after(std::chrono::milliseconds delay) {
    timer_.expires_after(delay);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->outcome_.failure = TransportFailure::none;
      self->outcome_.error.clear();
      self->start();
    });
  }

  void complete(InboundResponse response) {
    outcome_.failure = TransportFailure::none;
    outcome_.error.clear();
    outcome_.response = std::move(response);
    finish();
  }

  void finish() {
    done_ = true;
    ++client_->requests;
    promise_.set_value(std::move(outcome_));
    client_->finished();
  }

  std::shared_ptr<HttpClient::Impl> client_;
  OutboundRequest request_;
  ParsedUrl url_;
  net::steady_timer timer_;
  std::unique_ptr<Connection> connection_;
  bool reused_ = false;
  bhttp::request<bhttp::string_body> http_request_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  HttpOutcome outcome_;
  std::promise<HttpOutcome> promise_;
  bool done_ = false;
};

void HttpClient::Impl::submit(std::shared_ptr<Exchange> exchange) {
  if (in_flight_ < options_.max_in_flight) {
    ++in_flight_;
    in_flight_count = in_flight_;
    exchange->start();
  } else {
    queue_.push_back(std::move(exchange));
    queued_count = queue_.size();
  }
}

void HttpClient::Impl::finished() {
  --in_flight_;
  if (!queue_.empty()) {
    auto next = std::move(queue_.front());
    queue_.pop_front();
    ++in_flight_;
    // Post rather than start here: finish() runs inside another exchange's handler.
    net::post(ioc(), [next = std::move(next)] { next->start(); });
  }
  in_flight_count = in_flight_;
  queued_count = queue_.size();
}

std::unique_ptr<Connection> HttpClient::Impl::take_idle(const std::string& origin) {
  auto it = idle_.find(origin);
  while (it != idle_.end() && !it->second.empty()) {
    auto connection = std::move(it->second.back());
    it->second.pop_back();
    if (connection->is_open()) return connection;
  }
  return nullptr;
}

void HttpClient::Impl::give_back(const std::string& origin, std::unique_ptr<Connection> connection) {
  auto& list = idle_[origin];
  if (list.size() < options_.max_idle_per_origin) list.push_back(std::move(connection));
}

std::chrono::milliseconds HttpClient::Impl::backoff(int attempt) {
  return common::full_jitter_backoff(attempt, options_.retry.initial_backoff, options_.retry.max_backoff, rng_);
}

HttpClient::HttpClient(HttpRuntime& runtime, HttpClientOptions options)
    : impl_(std::make_shared<Impl>(runtime.impl(), std::move(options))) {}

HttpClient::~HttpClient() = default;

std::future<HttpOutcome> HttpClient::send(OutboundRequest request) {
  auto url = parse_url(request.url);
  if (!url) {
    std::promise<HttpOutcome> failed;
    HttpOutcome outcome;
    outcome.failure = TransportFailure::bad_url;
    outcome.error = "not an absolute http(s) URL";
    failed.set_value(std::move(outcome));
    return failed.get_future();
  }
  auto exchange = std::make_shared<Exchange>(impl_, std::move(request), std::move(*url));
  auto future = exchange->future();
  net::post(impl_->ioc(),
            [impl = impl_, exchange = std::move(exchange)]() mutable { impl->submit(std::move(exchange)); });
  return future;
}

HttpClientStats HttpClient::stats() const {
  HttpClientStats s;
  s.requests = impl_->requests;
  s.attempts = impl_->attempts;
  s.connections_opened = impl_->opened;
  s.connections_reused = impl_->reused;
  s.in_flight = impl_->in_flight_count;
  s.queued = impl_->queued_count;
  return s;
}

}  // namespace labelbroker::vendors
