#pragma once
// Delivers vendor callbacks (webhooks) from a small dedicated thread pool, never from the HTTP
// server's threads. Each delivery is an HTTP/1.1 POST with a timeout on every step; each thread
// keeps one connection alive per receiver (a benchmark sends thousands of callbacks). A non-2xx
// answer or a transport error is retried with exponential backoff up to max_attempts.
//
// Thread safety: send() may be called from any thread. `done` runs on a sender thread, once per
// callback, and must not call back into the sender. Beast stays inside callback_sender.cpp.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "vendors/sim/scenario.hpp"

namespace labelbroker::vendors::sim {

struct Callback {
  std::string url;  // http://host[:port]/path?query (https is refused: the simulator is local)
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, this header gets the current unix time in seconds on every attempt.
  std::string timestamp_header;
  // delivered: a 2xx arrived; attempts: how many were made.
  std::function<void(bool delivered, int attempts)> done;
};

struct ParsedUrl {
  std::string host;
  std::string port;
  std::string target;
};
// Only http:// URLs. Returns false for anything else.
bool parse_http_url(const std::string& url, ParsedUrl& out);

class CallbackSender {
 public:
  explicit CallbackSender(CallbackPolicy policy);
  ~CallbackSender();
  CallbackSender(const CallbackSender&) = delete;
  CallbackSender& operator=(const CallbackSender&) = delete;

  void send(Callback callback);
  // Stops the threads; callbacks not yet delivered are abandoned (their `done` is not called).
  void stop();

 private:
  struct Pending {
    std::chrono::steady_clock::time_point due;
    std::uint64_t order;
    int attempts;
    std::shared_ptr<Callback> callback;
    bool operator>(const Pending& other) const { return due != other.due ? due > other.due : order > other.order; }
  };
  struct Connection;
  using Connections = std::map<std::string, std::unique_ptr<Connection>>;
  void run();
  // One attempt; returns the HTTP status (0 for a transport failure).
  int attempt(const Callback& callback, Connections& connections);
  int exchange(Connection& connection, const ParsedUrl& url, const Callback& callback);

  CallbackPolicy policy_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> queue_;
  std::uint64_t order_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace labelbroker::vendors::sim
