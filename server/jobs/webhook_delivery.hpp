#pragma once
// Delivers job events from the outbox (db/webhook_store) to teams' callback URLs, signed and
// retried.
//
// Each request is a POST of the stored body with
//   Content-Type: application/json
//   User-Agent: labelbroker/<version>
//   X-Labelbroker-Event: <event>           e.g. job.completed
//   X-Labelbroker-Delivery: <outbox id>    the same on every retry: receivers deduplicate on it
//   X-Labelbroker-Timestamp: <unix seconds when this attempt was sent>  (informational, not signed)
//   X-Labelbroker-Signature: sha256=<hex HMAC-SHA256(team webhook secret, body)>
// A 2xx answer marks the delivery delivered; anything else (including redirects) or a network error
// schedules another attempt after a full-jitter exponential backoff (backoff_initial doubling up to
// backoff_max; Retry-After on 429/503 is honoured up to backoff_max), until the next attempt would
// fall after the delivery's give-up time, when it is marked failed. Delivery is at least once.
//
// Threading: run_once() blocks (database and HTTP) and must not run on an HTTP I/O thread or on the
// HttpRuntime's thread. start() runs it on a thread of its own. The pool and runtime must outlive
// this object.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "config/config.hpp"
#include "db/pool.hpp"
#include "vendors/common/http_client.hpp"

namespace labelbroker::jobs {

struct WebhookDeliveryOptions {
  std::size_t batch_size = 32;                      // deliveries claimed (and sent concurrently) per run_once
  std::chrono::milliseconds idle_wait{200};         // loop sleep when nothing was due; notify() cuts it short
  std::chrono::milliseconds error_wait{2000};       // loop sleep after a database failure
};

// "sha256=<lower-case hex HMAC-SHA256(secret, body)>", the X-Labelbroker-Signature value.
std::string webhook_signature(std::string_view secret, std::string_view body);

// The wait before the next attempt after `attempts` failed ones (>= 1): uniformly random in
// [0, min(backoff_max, backoff_initial * 2^(attempts-1))] ("full jitter"), or, when the receiver
// sent Retry-After (429/503), that delay, capped at backoff_max.
std::chrono::milliseconds webhook_retry_delay(const config::WebhookConfig& config, int attempts,
                                              std::optional<std::chrono::milliseconds> retry_after,
                                              std::mt19937_64& rng);

class WebhookDelivery {
 public:
  WebhookDelivery(db::ConnectionPool& pool, config::WebhookConfig config, vendors::HttpRuntime& runtime,
                  WebhookDeliveryOptions options = {});
  ~WebhookDelivery();  // stop()s
  WebhookDelivery(const WebhookDelivery&) = delete;
  WebhookDelivery& operator=(const WebhookDelivery&) = delete;

  // Claims the due deliveries (up to batch_size), POSTs them concurrently, waits for the answers
  // and records each outcome. Returns how many deliveries it attempted. A failed claim (database
  // down) throws; an outcome that cannot be recorded is logged, and that delivery is sent again
  // once its lease runs out (at least once).
  std::size_t run_once();

  // Runs run_once() on a background thread until stop(): again at once after a full batch,
  // otherwise after idle_wait or notify(). Database errors are logged and retried after error_wait.
  void start();
  // Wakes the loop (e.g. after a job ended and wrote an event). Safe from any thread.
  void notify();
  // Finishes the run_once() in progress (bounded by the HTTP timeout) and joins the thread.
  void stop();

  // How long a claim keeps other processes away from a delivery: longer than one attempt can take.
  std::chrono::milliseconds lease() const { return lease_; }

 private:
  void loop();

  db::ConnectionPool& pool_;
  config::WebhookConfig config_;
  WebhookDeliveryOptions options_;
  std::chrono::milliseconds lease_;
  std::unique_ptr<vendors::HttpClient> client_;
  std::string user_agent_;

  std::mutex rng_mutex_;
  std::mt19937_64 rng_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool notified_ = false;
  std::thread thread_;
};

}  // namespace labelbroker::jobs
