#include "vendors/sim/callback_sender.hpp"

#include <algorithm>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/log.hpp"

namespace labelbroker::vendors::sim {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

bool parse_http_url(const std::string& url, ParsedUrl& out) {
  constexpr std::string_view scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) return false;
  const std::string rest = url.substr(scheme.size());
  const auto slash = rest.find_first_of("/?");
  std::string authority = rest.substr(0, slash);
  out.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (!out.target.empty() && out.target.front() == '?') out.target.insert(0, "/");
  if (authority.empty() || authority.find('@') != std::string::npos) return false;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) return false;
    out.host = authority.substr(1, close - 1);
    out.port = close + 1 < authority.size() && authority[close + 1] == ':' ? authority.substr(close + 2) : "80";
  } else {
    const auto colon = authority.rfind(':');
    out.host = authority.substr(0, colon);
    out.port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  }
  if (out.host.empty() || out.port.empty() || out.port.find_first_not_of("0123456789") != std::string::npos)
    return false;
  return true;
}

CallbackSender::CallbackSender(CallbackPolicy policy) : policy_(policy) {
  for (int i = 0; i < policy_.threads; ++i) threads_.emplace_back([this] { run(); });
}

CallbackSender::~CallbackSender() {
  stop();
}

void CallbackSender::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void CallbackSender::send(Callback callback) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    queue_.push({std::chrono::steady_clock::now(), order_++, 0, std::make_shared<Callback>(std::move(callback))});
  }
  wake_.notify_one();
}

void CallbackSender::run() {
  Connections connections;  // this thread's kept-alive connections, by host:port
  std::unique_lock lock(mutex_);
  while (true) {
    if (stopping_) return;
    if (queue_.empty()) {
      wake_.wait(lock);
      continue;
    }
    if (queue_.top().due > std::chrono::steady_clock::now()) {
      // A copy: wait_until holds its deadline by reference while the lock is released, and a
      // push meanwhile may reallocate the queue under it.
      const auto due = queue_.top().due;
      wake_.wait_until(lock, due);
      continue;
    }
    Pending item = queue_.top();
    queue_.pop();
    lock.unlock();
    const int status = attempt(*item.callback, connections);
    ++item.attempts;
    const bool delivered = status >= 200 && status < 300;
    lock.lock();
    if (delivered || item.attempts >= policy_.max_attempts) {
      if (!delivered) {
        common::log::warn("callback abandoned", {{"url", common::log::redact_url(item.callback->url)},
                                                 {"attempts", item.attempts},
                                                 {"last_status", status}});
      }
      lock.unlock();
      if (item.callback->done) item.callback->done(delivered, item.attempts);
      lock.lock();
      continue;
    }
    // Exponential backoff, capped so that a long max_attempts does not stall for hours.
    auto pause = policy_.backoff * (1LL << std::min(item.attempts - 1, 10));
    item.due = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(pause, std::chrono::minutes(5));
    item.order = order_++;
    queue_.push(item);
  }
}

struct CallbackSender::Connection {
  net::io_context ioc;
  beast::tcp_stream stream{ioc};
  bool open = false;
  void close() {
    beast::error_code ignored;
    stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    stream.close();
    open = false;
  }
};

int CallbackSender::attempt(const Callback& callback, Connections& connections) {
  ParsedUrl url;
  if (!parse_http_url(callback.url, url)) return 0;
  auto& connection = connections[url.host + ":" + url.port];
  if (!connection) connection = std::make_unique<Connection>();
  const bool reused = connection->open;
  int status = exchange(*connection, url, callback);
  // A kept-alive connection the receiver closed meanwhile fails at once: try a fresh one.
  if (status == 0 && reused) status = exchange(*connection, url, callback);
  return status;
}

int CallbackSender::exchange(Connection& connection, const ParsedUrl& url, const Callback& callback) {
  bhttp::request<bhttp::string_body> req(bhttp::verb::post, url.target, 11);
  req.set(bhttp::field::host, url.host + ":" + url.port);
  req.set(bhttp::field::content_type, "application/json");
  req.set(bhttp::field::user_agent, "vendor-sim");
  for (const auto& [k, v] : callback.headers) req.set(k, v);
  if (!callback.timestamp_header.empty()) {
    const auto now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    req.set(callback.timestamp_header, std::to_string(now.count()));
  }
  req.body() = callback.body;
  req.prepare_payload();
  beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> res;
  int status = 0;
  bool keep_alive = false;

  // Asynchronous operations run to completion on the connection's private io_context, because
  // Beast's timeouts (expires_after) apply only to them.
  auto& stream = connection.stream;
  auto send = [&] {
    stream.expires_after(policy_.timeout);
    bhttp::async_write(stream, req, [&](beast::error_code wec, std::size_t) {
      if (wec) return;
      stream.expires_after(policy_.timeout);
      bhttp::async_read(stream, buffer, res, [&](beast::error_code rec, std::size_t) {
        if (rec) return;
        status = static_cast<int>(res.result_int());
        keep_alive = res.keep_alive();
      });
    });
  };
  net::ip::tcp::resolver resolver(connection.ioc);
  connection.ioc.restart();
  if (connection.open) {
    send();
  } else {
    stream.expires_after(policy_.timeout);
    resolver.async_resolve(url.host, url.port, [&](beast::error_code ec, net::ip::tcp::resolver::results_type results) {
      if (ec) return;
      stream.async_connect(results, [&](beast::error_code cec, const net::ip::tcp::endpoint&) {
        if (!cec) send();
      });
    });
  }
  connection.ioc.run();
  if (status != 0 && keep_alive) {
    connection.open = true;
  } else {
    connection.close();
  }
  return status;
}

}  // namespace labelbroker::vendors::sim
