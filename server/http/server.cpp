#include "http/server.hpp"

#include <condition_variable>
#include <csignal>
#include <limits>
#include <ctime>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/log.hpp"
#include "common/time.hpp"
#include "http/problem.hpp"

namespace labelbroker::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
// Each I/O thread runs its own io_context and owns the connections accepted onto it, so a
// connection's handlers never run concurrently and need no strand; the concrete executor type
// also avoids the type-erased any_io_executor on every operation.
using Executor = net::io_context::executor_type;
using Socket = net::basic_stream_socket<tcp, Executor>;
using Acceptor = net::basic_socket_acceptor<tcp, Executor>;
using Stream = beast::basic_stream<tcp, Executor, beast::unlimited_rate_policy>;

// How much of a streamed body is produced and written at a time.
constexpr std::size_t kStreamPiece = 1 << 20;

// The HTTP Date header changes once a second; format it once per second per thread.
const std::string& http_date() {
  thread_local std::time_t cached_second = 0;
  thread_local std::string cached;
  std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached = buf;
    cached_second = now;
  }
  return cached;
}

// Request ids only need to be unique, not secret: a per-thread xorshift generator seeded from the
// OS is far cheaper per request than a CSPRNG call (which also checks for fork on every use).
std::string new_request_id() {
  thread_local std::uint64_t state[2] = {
      (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}(),
      (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}() ^ 0x9E3779B97F4A7C15ULL};
  auto next = [] {
    std::uint64_t s1 = state[0];
    const std::uint64_t s0 = state[1];
    state[0] = s0;
    s1 ^= s1 << 23;
    state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return state[1] + s0;
  };
  static const char digits[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t v = next();
    for (int i = 0; i < 16; ++i, v >>= 4) id[half * 16 + i] = digits[v & 0xF];
  }
  return id;
}

// The access log's RFC 3339 timestamp with milliseconds; the part up to the seconds is formatted
// once per second per thread.
void append_log_timestamp(std::string& out) {
  thread_local std::time_t cached_second = -1;
  thread_local std::string cached;  // "2026-11-28T01:02:03"
  const auto now = std::chrono::system_clock::now();
  const auto since_epoch = now.time_since_epoch();
  const std::time_t second =
      static_cast<std::time_t>(std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count());
  if (second != cached_second) {
    cached = common::format_rfc3339(std::chrono::system_clock::from_time_t(second));
    cached.pop_back();  // the 'Z'
    cached_second = second;
  }
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000;
  out += cached;
  out += '.';
  out += static_cast<char>('0' + millis / 100);
  out += static_cast<char>('0' + millis / 10 % 10);
  out += static_cast<char>('0' + millis % 10);
  out += 'Z';
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

class Session;

class Server::Impl {
 public:
  Impl(ServerOptions options, const Router& router, Lifecycle& lifecycle)
      : options_(std::move(options)),
        router_(router),
        lifecycle_(lifecycle),
        iocs_(make_io_contexts(std::max(1, options_.io_threads))),
        acceptor_(iocs_.front()->get_executor()),
        workers_(static_cast<std::size_t>(std::max(1, options_.worker_threads))) {}

  ~Impl() {
    if (started_ && !stopped_) {
      begin_shutdown();
      wait();
    }
  }

  void bind();
  void start();
  void handle_signals();
  void begin_shutdown();
  bool wait();

  // Called by sessions.
  void register_session(const std::shared_ptr<Session>& session);
  void unregister_session(std::uint64_t id);
  Response dispatch_inline(Request& request, const Route& route);
  // The route's fast path on the I/O thread; nullopt (also when it throws) sends the request on
  // to the worker pool.
  std::optional<Response> try_fast(Request& request, const Route& route);
  // Writes the access log line and tells the observer.
  void access_log(const Request& request, const Route* route, int status, std::size_t bytes, Clock::time_point started);

  const ServerOptions& options() const { return options_; }
  const Router& router() const { return router_; }
  Lifecycle& lifecycle() { return lifecycle_; }
  net::thread_pool& workers() { return workers_; }
  bool shutting_down() const { return shutdown_requested_.load(); }
  std::size_t open_connections() const {
    std::lock_guard lock(sessions_mutex_);
    return sessions_.size();
  }
  std::uint16_t port() const { return bound_port_; }

 private:
  void do_accept();
  void on_accept(beast::error_code ec, Socket socket);
  static std::vector<std::unique_ptr<net::io_context>> make_io_contexts(int count) {
    std::vector<std::unique_ptr<net::io_context>> out;
    for (int i = 0; i < count; ++i) out.push_back(std::make_unique<net::io_context>(1));
    return out;
  }
  void close_listener_and_idle_sessions();

  ServerOptions options_;
  const Router& router_;
  Lifecycle& lifecycle_;

  // Declared before the io_context: sessions destroyed while the io_context is torn down still
  // unregister themselves here.
  mutable std::mutex sessions_mutex_;
  std::condition_variable sessions_changed_;
  std::unordered_map<std::uint64_t, std::weak_ptr<Session>> sessions_;
  std::uint64_t next_session_id_ = 1;

  std::vector<std::unique_ptr<net::io_context>> iocs_;
  std::size_t next_io_context_ = 0;
  Acceptor acceptor_;
  net::thread_pool workers_;
  std::optional<net::signal_set> signals_;
  std::vector<std::thread> io_threads_;
  std::uint16_t bound_port_ = 0;
  bool bound_ = false;
  bool started_ = false;
  bool stopped_ = false;

  std::mutex shutdown_mutex_;
  std::condition_variable shutdown_cv_;
  std::atomic<bool> shutdown_requested_{false};
  std::atomic<bool> force_stop_{false};
};

// One connection. All its handlers run on its strand; lifetime is held by the pending operation.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket&& socket, Server::Impl& server, std::uint64_t id)
      : stream_(std::move(socket)), server_(server), id_(id) {
    beast::error_code ec;
    auto endpoint = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = endpoint.address().to_string();
  }

  ~Session() { server_.unregister_session(id_); }

  std::uint64_t id() const { return id_; }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

  // From the server's shutdown: close now if no request is being served, else after its response.
  void shutdown() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      if (self->state_ == State::idle || self->state_ == State::reading_header) {
        beast::error_code ec;
        self->stream_.socket().shutdown(Socket::shutdown_both, ec);
        self->stream_.close();
      }
    });
  }

 private:
  enum class State { idle, reading_header, reading_body, handling, writing, closed };

  void do_read() {
    if (closing_) return do_close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options().header_limit_bytes));
    // The body limit depends on the route, known only once the header is parsed (on_header sets
    // it). Until then no limit: Beast checks a declared Content-Length against it at the end of
    // the header, before we could route. (Not boost::none: Beast 1.74 compares the length with
    // the optional, and "len > none" is true, so none would reject every body.)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    body_limit_ = server_.options().body_limit_bytes;
    match_ = RouteMatch{};
    target_ok_ = false;
    body_read_ = false;
    if (buffer_.size() == 0) {
      // Waiting for the first byte of the next request is idle time, with its own timeout.
      state_ = State::idle;
      stream_.expires_after(server_.options().idle_timeout);
      stream_.async_read_some(buffer_.prepare(4096),
                              beast::bind_front_handler(&Session::on_first_bytes, shared_from_this()));
    } else {
      read_header();
    }
  }

  void on_first_bytes(beast::error_code ec, std::size_t n) {
    if (ec) return do_close();  // idle timeout, client closed, or shutdown
    buffer_.commit(n);
    read_header();
  }

  void read_header() {
    state_ = State::reading_header;
    started_ = Clock::now();
    request_ = Request{};
    route_ = nullptr;
    // Most requests arrive in one segment: parse what is buffered now instead of paying another
    // trip through the scheduler. The parser stops at the end of the header (it is not eager).
    while (buffer_.size() > 0 && !parser_->is_header_done()) {
      beast::error_code ec;
      const std::size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == bhttp::error::need_more) break;
      if (ec) return on_read_error(ec);
      if (used == 0) break;
    }
    if (parser_->is_header_done()) return on_header({}, 0);
    stream_.expires_after(server_.options().header_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    auto& header = parser_->get();
    begin_request();
    // Route now, before the body: the route decides how large a body may be.
    target_ok_ = parse_target(request_.target, request_.path, request_.query);
    if (target_ok_) match_ = server_.router().match(request_.method, request_.path);
    route_ = match_.route;
    body_limit_ = Router::body_limit(match_.route, server_.options().body_limit_bytes);
    if (auto length = parser_->content_length(); length && *length > body_limit_) {
      return send_error(413, "payload-too-large", "Payload too large",
                        "the request body is " + std::to_string(*length) + " bytes; the limit is " +
                            std::to_string(body_limit_));
    }
    parser_->body_limit(body_limit_);  // enforced while reading a chunked body
    if (parser_->is_done()) return on_request();
    state_ = State::reading_body;
    stream_.expires_after(server_.options().body_timeout);
    auto expect = header[bhttp::field::expect];
    if (!expect.empty() && iequals(expect, "100-continue") && header.version() >= 11) {
      // The client waits for this before sending the body.
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(kContinue),
                       [self = shared_from_this()](beast::error_code wec, std::size_t) {
                         if (wec) return self->do_close();
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    bhttp::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    on_request();
  }

  void begin_request() {
    const auto& header = parser_->get();
    request_.method = std::string(header.method_string());
    request_.target = std::string(header.target());
    request_.remote_address = remote_;
    for (const auto& field : header) request_.headers.add(std::string(field.name_string()), std::string(field.value()));
    auto incoming = request_.headers.get("X-Request-Id");
    request_.request_id = incoming && valid_request_id(*incoming) ? std::string(*incoming) : new_request_id();
    keep_alive_ = header.keep_alive();
    version_ = header.version();
  }

  void on_read_error(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
        ec == net::error::operation_aborted || ec == beast::error::timeout || ec == bhttp::error::partial_message) {
      // Client went away, or was too slow (the stream closed itself on timeout).
      if (ec == beast::error::timeout) {
        common::log::info("connection timed out",
                          {{"remote", remote_}, {"phase", state_ == State::reading_body ? "body" : "header"}});
      }
      return do_close();
    }
    if (request_.request_id.empty()) {
      request_.request_id = new_request_id();
      request_.remote_address = remote_;
    }
    if (ec == bhttp::error::body_limit) {
      return send_error(
          413, "payload-too-large", "Payload too large",
          "the request body exceeds the limit of " + std::to_string(body_limit_) + " bytes");
    }
    if (ec == bhttp::error::header_limit) {
      return send_error(
          431, "headers-too-large", "Request header fields too large",
          "the request header exceeds " + std::to_string(server_.options().header_limit_bytes) + " bytes");
    }
    send_error(400, "malformed-request", "Bad request", "the request is not valid HTTP/1.1: " + ec.message());
  }

  // Answers without reading the rest of the request, then closes the connection.
  void send_error(int status, std::string_view slug, std::string_view title, const std::string& detail) {
    keep_alive_ = false;
    Response response = problem(status, slug, title, detail);
    response.close_connection = true;
    send(std::move(response));
  }

  void on_request() {
    state_ = State::handling;
    body_read_ = true;
    request_.body = std::move(parser_->get().body());
    if (!target_ok_) {
      return send(problem(400, "malformed-request", "Bad request", "the request target is not a valid path"));
    }
    RouteMatch match = std::move(match_);  // routed in on_header
    switch (match.outcome) {
      case RouteMatch::Outcome::found:
        break;
      case RouteMatch::Outcome::bad_path:
        return send(problem(400, "malformed-request", "Bad request", "the path contains an invalid percent escape"));
      case RouteMatch::Outcome::not_found:
        return send(problem(404, "not-found", "Not found", "no resource at " + request_.path));
      case RouteMatch::Outcome::method_not_allowed: {
        Response r = problem(405, "method-not-allowed", "Method not allowed",
                             request_.method + " is not supported on " + request_.path + "; use " + match.allow);
        r.headers.set("Allow", match.allow);
        return send(std::move(r));
      }
    }
    request_.path_params = std::move(match.params);
    const Route* route = match.route;
    if (route->execution == Execution::io_thread) return send(server_.dispatch_inline(request_, *route));
    if (route->fast) {
      if (auto response = server_.try_fast(request_, *route)) return send(std::move(*response));
    }

    // Blocking work: run on the worker pool, then come back to this connection's strand.
    net::post(server_.workers(), [self = shared_from_this(), route]() mutable {
      Response response = self->server_.dispatch_inline(self->request_, *route);
      net::post(self->stream_.get_executor(),
                [self, response = std::move(response)]() mutable { self->send(std::move(response)); });
    });
  }

  void send(Response response) {
    state_ = State::writing;
    const bool keep_alive = keep_alive_ && !closing_ && !response.close_connection && !server_.shutting_down();
    const bool head = request_.method == "HEAD";
    if (response.source) return send_streamed(std::move(response), keep_alive, head);
    const std::size_t body_bytes = head ? 0 : response.body.size();
    serialize_response(response, keep_alive, head, write_buffer_);
    const int status = response.status;
    stream_.expires_after(server_.options().write_timeout);
    net::async_write(stream_, net::buffer(write_buffer_),
                     [self = shared_from_this(), keep_alive, status, body_bytes](beast::error_code ec, std::size_t) {
                       self->server_.access_log(self->request_, self->route_, status, body_bytes, self->started_);
                       if (ec) return self->do_close();
                       if (!keep_alive) return self->finish_connection();
                       self->do_read();
                     });
  }

  // A body from a BodySource: the head first, then each piece, produced on a worker thread and
  // written on this connection's strand before the next is asked for (one piece in memory).
  void send_streamed(Response response, bool keep_alive, bool head) {
    const auto length = response.source->length();
    serialize_response(response, keep_alive, true, write_buffer_, length);
    const int status = response.status;
    auto source = head ? nullptr : response.source;
    stream_.expires_after(server_.options().write_timeout);
    net::async_write(stream_, net::buffer(write_buffer_),
                     [self = shared_from_this(), keep_alive, status, length, source](beast::error_code ec, std::size_t) {
                       if (ec) return self->do_close();
                       if (!source) return self->finish_streamed(keep_alive, status, 0);
                       self->pump(source, keep_alive, status, length);
                     });
  }

  void pump(std::shared_ptr<BodySource> source, bool keep_alive, int status, std::uint64_t length) {
    net::post(server_.workers(), [self = shared_from_this(), source, keep_alive, status, length]() mutable {
      std::string piece;
      bool more = false;
      bool failed = false;
      try {
        more = source->next(piece, kStreamPiece);
      } catch (const std::exception& e) {
        // The head is sent: all that is left is to cut the connection, so the client sees a
        // short body (Content-Length) rather than a complete-looking wrong one.
        common::log::warn("streamed response failed", {{"request_id", self->request_.request_id}, {"error", e.what()}});
        failed = true;
      }
      net::post(self->stream_.get_executor(), [self, source, keep_alive, status, length, more, failed,
                                               piece = std::move(piece)]() mutable {
        if (failed) return self->do_close();
        self->streamed_piece_ = std::move(piece);
        self->stream_.expires_after(self->server_.options().write_timeout);
        net::async_write(self->stream_, net::buffer(self->streamed_piece_),
                         [self, source, keep_alive, status, length, more](beast::error_code ec, std::size_t) {
                           if (ec) return self->do_close();
                           if (more) return self->pump(source, keep_alive, status, length);
                           self->finish_streamed(keep_alive, status, length);
                         });
      });
    });
  }

  void finish_streamed(bool keep_alive, int status, std::uint64_t length) {
    streamed_piece_.clear();
    streamed_piece_.shrink_to_fit();
    server_.access_log(request_, route_, status, static_cast<std::size_t>(length), started_);
    if (!keep_alive) return finish_connection();
    do_read();
  }

  // Writes status line, headers and body into `out` (reusing its capacity). Beast's serializer
  // is general (chunked bodies, buffer sequences) and measurably slower for small responses.
  void serialize_response(const Response& response, bool keep_alive, bool head, std::string& out,
                          std::optional<std::uint64_t> content_length = std::nullopt) const {
    out.clear();
    out += version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    out += std::to_string(response.status);
    out += ' ';
    out += bhttp::obsolete_reason(static_cast<bhttp::status>(response.status));
    out += "\r\n";
    for (const auto& [name, value] : response.headers.all()) {
      // Handlers never put CR or LF in a header on purpose; if one slips in, drop the field
      // rather than let it split the response.
      if (name.find_first_of("\r\n:") != std::string::npos || value.find_first_of("\r\n") != std::string::npos)
        continue;
      if (iequals(name, "Content-Length") || iequals(name, "Connection")) continue;
      out += name;
      out += ": ";
      out += value;
      out += "\r\n";
    }
    out += "Server: labelbroker\r\nDate: ";
    out += http_date();
    out += "\r\nX-Request-Id: ";
    out += request_.request_id;
    out += "\r\n";
    const bool bodiless_status = response.status < 200 || response.status == 204 || response.status == 304;
    if (!bodiless_status) {
      out += "Content-Length: ";
      out += std::to_string(content_length ? *content_length : response.body.size());
      out += "\r\n";
    }
    if (!keep_alive)
      out += "Connection: close\r\n";
    else if (version_ == 10)
      out += "Connection: keep-alive\r\n";
    out += "\r\n";
    if (!head && !bodiless_status) out += response.body;
  }

  // Closes after the last response. If the client may still be sending a body we did not read,
  // half-close and drain it for a while: closing a socket with unread data sends a reset that can
  // destroy the response before the client reads it.
  void finish_connection() {
    beast::error_code ec;
    stream_.socket().shutdown(Socket::shutdown_send, ec);
    if (body_read_ || ec) return do_close();
    state_ = State::closed;
    stream_.expires_after(server_.options().linger);
    drain();
  }

  void drain() {
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(64 * 1024), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->do_close();
      self->drain();
    });
  }

  void do_close() {
    state_ = State::closed;
    beast::error_code ec;
    stream_.socket().shutdown(Socket::shutdown_both, ec);
    stream_.close();
  }

  Stream stream_;
  Server::Impl& server_;
  std::uint64_t id_;
  std::string remote_;
  beast::flat_buffer buffer_;
  std::string write_buffer_;
  std::string streamed_piece_;  // the piece of a streamed body being written
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Request request_;
  RouteMatch match_;          // the current request's route, found once its header is read
  const Route* route_ = nullptr;  // match_.route, kept for the observer (match_ is consumed)
  bool target_ok_ = false;    // the request target parsed (else 400 once the request is read)
  std::size_t body_limit_ = 0;  // the current request's body limit (its route's, or the server's)
  Clock::time_point started_{};
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool body_read_ = false;
  bool closing_ = false;
  State state_ = State::idle;
};

void Server::Impl::bind() {
  if (bound_) return;
  beast::error_code ec;
  auto address = net::ip::make_address(options_.host, ec);
  if (ec) throw std::runtime_error("cannot listen on '" + options_.host + "': not an IP address");
  tcp::endpoint endpoint(address, options_.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error("cannot listen on " + options_.host + ":" + std::to_string(options_.port) + ": " +
                             ec.message());
  }
  bound_port_ = acceptor_.local_endpoint().port();
  bound_ = true;
}

void Server::Impl::start() {
  bind();
  started_ = true;
  do_accept();
  const int threads = static_cast<int>(iocs_.size());
  for (int i = 0; i < threads; ++i) {
    io_threads_.emplace_back([this, i] {
      // Keep running when idle: connections arrive later and are handed to this context.
      auto guard = net::make_work_guard(*iocs_[static_cast<std::size_t>(i)]);
      iocs_[static_cast<std::size_t>(i)]->run();
    });
  }
}

void Server::Impl::do_accept() {
  // Connections are spread over the I/O threads round-robin.
  auto& target = *iocs_[next_io_context_];
  next_io_context_ = (next_io_context_ + 1) % iocs_.size();
  acceptor_.async_accept(target.get_executor(), beast::bind_front_handler(&Impl::on_accept, this));
}

void Server::Impl::on_accept(beast::error_code ec, Socket socket) {
  if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
  if (!ec) {
    beast::error_code nodelay_ec;
    socket.set_option(tcp::no_delay(true), nodelay_ec);
    std::shared_ptr<Session> session;
    {
      std::lock_guard lock(sessions_mutex_);
      session = std::make_shared<Session>(std::move(socket), *this, next_session_id_++);
      sessions_.emplace(session->id(), session);
    }
    session->start();
  } else {
    // Usually EMFILE: keep serving the connections we have.
    common::log::warn("accept failed", {{"error", ec.message()}});
  }
  do_accept();
}

void Server::Impl::unregister_session(std::uint64_t id) {
  {
    std::lock_guard lock(sessions_mutex_);
    sessions_.erase(id);
  }
  sessions_changed_.notify_all();
}

std::optional<Response> Server::Impl::try_fast(Request& request, const Route& route) {
  try {
    return route.fast(request);
  } catch (const std::exception& e) {
    common::log::warn("fast path failed, trying the worker pool",
                      {{"route", route.pattern}, {"request_id", request.request_id}, {"error", e.what()}});
    return std::nullopt;
  }
}

Response Server::Impl::dispatch_inline(Request& request, const Route& route) {
  try {
    return route.handler(request);
  } catch (const std::exception& e) {
    if (const auto& mapper = router_.exception_mapper()) {
      try {
        if (auto mapped = mapper(e, request)) {
          common::log::warn("handler failed, answered from the error mapping", {{"method", request.method},
                                                                                {"route", route.pattern},
                                                                                {"request_id", request.request_id},
                                                                                {"status", mapped->status},
                                                                                {"error", e.what()}});
          return std::move(*mapped);
        }
      } catch (const std::exception& mapping_error) {
        common::log::error("error mapping failed", {{"error", mapping_error.what()}});
      }
    }
    common::log::error("handler failed", {{"method", request.method},
                                          {"route", route.pattern},
                                          {"request_id", request.request_id},
                                          {"error", e.what()}});
  }
  return problem(500, "internal-error", "Internal server error",
                 "the server failed to handle this request; quote request id " + request.request_id);
}

void Server::Impl::access_log(const Request& request, const Route* route, int status, std::size_t bytes,
                              Clock::time_point started) {
  const auto elapsed = Clock::now() - started;
  if (options_.observer) options_.observer(route, status, std::chrono::duration<double>(elapsed).count());
  if (!options_.access_log || !common::log::enabled(common::log::Level::info)) return;
  // Formatted by hand: this runs for every request and a json object per line costs more than
  // the rest of a /healthz request.
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  char duration[32];
  std::snprintf(duration, sizeof duration, "%lld.%03lld", static_cast<long long>(micros / 1000),
                static_cast<long long>(micros % 1000));
  std::string line;
  line.reserve(256 + request.path.size());
  line += R"({"ts":")";
  append_log_timestamp(line);
  line += R"(","level":"info","msg":"request","method":)";
  common::log::append_json_string(line, request.method);
  line += R"(,"path":)";
  common::log::append_json_string(line, request.path.empty() ? request.target : request.path);
  line += R"(,"status":)";
  line += std::to_string(status);
  line += R"(,"bytes":)";
  line += std::to_string(bytes);
  line += R"(,"duration_ms":)";
  line += duration;
  line += R"(,"request_id":)";
  common::log::append_json_string(line, request.request_id);
  line += R"(,"remote":)";
  common::log::append_json_string(line, request.remote_address);
  line += '}';
  common::log::write_raw_line(std::move(line));
}

void Server::Impl::handle_signals() {
  signals_.emplace(*iocs_.front(), SIGINT, SIGTERM);
  signals_->async_wait([this](beast::error_code ec, int signal) {
    if (ec) return;
    common::log::info("signal received, shutting down", {{"signal", signal == SIGINT ? "SIGINT" : "SIGTERM"}});
    begin_shutdown();
    // A second signal means "now": stop waiting for requests in flight.
    signals_->async_wait([this](beast::error_code ec2, int) {
      if (ec2) return;
      common::log::warn("second signal, stopping without waiting for requests in flight");
      force_stop_ = true;
      shutdown_cv_.notify_all();
      sessions_changed_.notify_all();
    });
  });
}

void Server::Impl::begin_shutdown() {
  lifecycle_.draining = true;
  {
    std::lock_guard lock(shutdown_mutex_);
    shutdown_requested_ = true;
  }
  shutdown_cv_.notify_all();
}

void Server::Impl::close_listener_and_idle_sessions() {
  net::post(acceptor_.get_executor(), [this] {
    beast::error_code ec;
    acceptor_.close(ec);
  });
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(sessions_mutex_);
    for (auto& [id, weak] : sessions_) {
      if (auto s = weak.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->shutdown();
}

bool Server::Impl::wait() {
  if (!started_ || stopped_) return true;
  {
    std::unique_lock lock(shutdown_mutex_);
    shutdown_cv_.wait(lock, [this] { return shutdown_requested_.load(); });
    // Keep serving (with /readyz at 503) so load balancers notice before connections are refused.
    shutdown_cv_.wait_for(lock, options_.drain_delay, [this] { return force_stop_.load(); });
  }
  close_listener_and_idle_sessions();
  bool drained;
  {
    std::unique_lock lock(sessions_mutex_);
    drained = sessions_changed_.wait_for(lock, options_.shutdown_grace,
                                         [this] { return sessions_.empty() || force_stop_.load(); });
    drained = drained && sessions_.empty();
    if (!drained) {
      common::log::warn("shutdown grace period over, closing connections still open",
                        {{"connections", sessions_.size()}});
    }
  }
  for (auto& ioc : iocs_) ioc->stop();
  for (auto& t : io_threads_) t.join();
  if (signals_) {
    // Only the caller's thread is left. Block SIGINT/SIGTERM in it: once the signal_set is torn
    // down the default action returns, and a second signal during teardown would turn a clean
    // exit into 143.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  }
  io_threads_.clear();
  // The close posted above may not have run before stop(); no I/O thread is left, so close here.
  beast::error_code ec;
  acceptor_.close(ec);
  workers_.join();
  stopped_ = true;
  return drained;
}

Server::Server(ServerOptions options, const Router& router, Lifecycle& lifecycle)
    : impl_(std::make_unique<Impl>(std::move(options), router, lifecycle)) {}

Server::~Server() = default;

void Server::bind() {
  impl_->bind();
}

void Server::start() {
  impl_->start();
}
std::uint16_t Server::port() const {
  return impl_->port();
}
void Server::handle_signals() {
  impl_->handle_signals();
}
void Server::begin_shutdown() {
  impl_->begin_shutdown();
}
bool Server::wait() {
  return impl_->wait();
}
std::size_t Server::open_connections() const {
  return impl_->open_connections();
}

}  // namespace labelbroker::http
