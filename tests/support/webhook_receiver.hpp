#pragma once
// A team's webhook endpoint for tests: a real HTTP server on a free port that records every POST to
// /hooks/{name} and answers with scripted statuses in order (200 once the script is used up),
// optionally after a delay.
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http/router.hpp"
#include "http/server.hpp"
#include "support/loopback_server.hpp"

namespace labelbroker::testing {

struct ReceivedHook {
  std::string path;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// A team's webhook endpoint: records every request and answers with the scripted statuses in
// order (200 once the script is used up), optionally after a delay.
class WebhookReceiver {
 public:
  struct Answer {
    Answer(int status_ = 200, std::string retry_after_ = "") : status(status_), retry_after(std::move(retry_after_)) {}
    int status;
    std::string retry_after;  // Retry-After header value, if not empty
  };

  WebhookReceiver() : server_(loopback_server_options(1, 8), router_, lifecycle_) {
    server_.bind();
    router_.add("POST", "/hooks/{name}", [this](http::Request& req) {
      ReceivedHook r{req.path, {}, req.body};
      for (const auto& [name, value] : req.headers.all()) {
        std::string lower = name;
        for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        r.headers[lower] = value;
      }
      Answer answer;
      std::chrono::milliseconds delay{0};
      {
        std::lock_guard lock(mutex_);
        received_.push_back(std::move(r));
        if (!script_.empty()) {
          answer = script_.front();
          script_.pop_front();
        }
        delay = delay_;
        changed_.notify_all();
      }
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      auto response = http::Response::json(answer.status, "{}");
      if (!answer.retry_after.empty()) response.headers.set("Retry-After", answer.retry_after);
      return response;
    });
    server_.start();
  }

  std::string url(const std::string& name) const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + "/hooks/" + name;
  }
  void script(std::vector<Answer> answers) {
    std::lock_guard lock(mutex_);
    script_.assign(answers.begin(), answers.end());
  }
  void set_delay(std::chrono::milliseconds delay) {
    std::lock_guard lock(mutex_);
    delay_ = delay;
  }
  std::vector<ReceivedHook> received() {
    std::lock_guard lock(mutex_);
    return received_;
  }
  // Waits until `count` requests arrived; the limit only keeps a broken build from hanging.
  std::vector<ReceivedHook> wait_for(std::size_t count, std::chrono::seconds limit = std::chrono::seconds(30)) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, limit, [&] { return received_.size() >= count; });
    return received_;
  }

 private:
  http::Router router_;
  http::Lifecycle lifecycle_;
  http::Server server_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<ReceivedHook> received_;
  std::deque<Answer> script_;
  std::chrono::milliseconds delay_{0};
};

}  // namespace labelbroker::testing
