#include "jobs/webhook_delivery.hpp"

#include <algorithm>
#include <exception>
#include <future>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/backoff.hpp"
#include "common/build_info.hpp"
#include "common/crypto.hpp"
#include "common/log.hpp"
#include "db/webhook_store.hpp"

namespace labelbroker::jobs {
namespace {

namespace log = common::log;
using std::chrono::milliseconds;

// scheme://host:port of a URL, without user info, path or query: callback URLs may carry a token
// in the query string, and the logs need only know where a delivery went.
std::string url_origin(const std::string& url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return "(not a URL)";
  const auto authority_begin = scheme_end + 3;
  auto authority_end = url.find_first_of("/?#", authority_begin);
  if (authority_end == std::string::npos) authority_end = url.size();
  auto host_begin = url.rfind('@', authority_end);
  host_begin = host_begin == std::string::npos || host_begin < authority_begin ? authority_begin : host_begin + 1;
  return url.substr(0, authority_begin) + url.substr(host_begin, authority_end - host_begin);
}

std::string unix_seconds_now() {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

}  // namespace

std::string webhook_signature(std::string_view secret, std::string_view body) {
  return "sha256=" + common::hmac_sha256_hex(secret, body);
}

milliseconds webhook_retry_delay(const config::WebhookConfig& config, int attempts,
                                 std::optional<milliseconds> retry_after, std::mt19937_64& rng) {
  const milliseconds cap = std::max(config.backoff_max, milliseconds(0));
  if (retry_after) return std::clamp(*retry_after, milliseconds(0), cap);
  // Full jitter: receivers that were down for everyone get their retries spread out, not in waves.
  return common::full_jitter_backoff(attempts, std::max(config.backoff_initial, milliseconds(1)), cap, rng);
}

WebhookDelivery::WebhookDelivery(db::ConnectionPool& pool, config::WebhookConfig config,
                                 vendors::HttpRuntime& runtime, WebhookDeliveryOptions options)
    : pool_(pool),
      config_(config),
      options_(options),
      // Covers connecting and the exchange (each bounded by the timeout) plus the database work
      // around them, so a healthy process always records its outcome before another can claim.
      lease_(2 * config.timeout + std::chrono::seconds(30)),
      user_agent_("labelbroker/" + std::string(common::build_version())),
      rng_(std::random_device{}()) {
  if (options_.batch_size == 0) options_.batch_size = 1;
  vendors::HttpClientOptions http;
  // A whole batch goes out at once, so the lease bounds the batch, not just one request.
  http.max_in_flight = options_.batch_size;
  http.connect_timeout = config_.timeout;
  http.request_timeout = config_.timeout;
  // Only the status matters; a receiver's large answer is read and dropped, up to this much.
  http.max_response_bytes = 1024 * 1024;
  // The outbox does the retrying (durably, with its own backoff), so the client never does.
  http.retry.max_attempts = 1;
  http.user_agent = user_agent_;
  client_ = std::make_unique<vendors::HttpClient>(runtime, http);
}

WebhookDelivery::~WebhookDelivery() { stop(); }

std::size_t WebhookDelivery::run_once() {
  auto claimed =
      pool_.run([&](auto& c) { return db::claim_due_deliveries(c, options_.batch_size, lease_); });
  if (claimed.empty()) return 0;

  std::vector<std::future<vendors::HttpOutcome>> answers;
  answers.reserve(claimed.size());
  for (const auto& d : claimed) {
    vendors::OutboundRequest request;
    request.method = "POST";
    request.url = d.url;
    request.body = d.body;
    request.retry_safe = false;
    // The signature covers exactly the body, as documented to teams; the timestamp is a hint only.
    request.headers = {{"Content-Type", "application/json"},
                       {"User-Agent", user_agent_},
                       {"X-Labelbroker-Event", d.event},
                       {"X-Labelbroker-Delivery", std::to_string(d.id)},
                       {"X-Labelbroker-Timestamp", unix_seconds_now()},
                       {"X-Labelbroker-Signature", webhook_signature(d.secret, d.body)}};
    answers.push_back(client_->send(std::move(request)));
  }

  for (std::size_t i = 0; i < claimed.size(); ++i) {
    const auto& d = claimed[i];
    vendors::HttpOutcome outcome;
    try {
      outcome = answers[i].get();
    } catch (const std::exception& e) {
      outcome.failure = vendors::TransportFailure::io;
      outcome.error = e.what();
    }
    nlohmann::json fields = {{"delivery_id", d.id}, {"job_id", d.job_id},   {"event", d.event},
                             {"team_id", d.team_id}, {"attempt", d.attempts}, {"destination", url_origin(d.url)}};
    try {
      const int status = outcome.has_response() ? outcome.response->status : 0;
      if (status >= 200 && status < 300) {
        pool_.run([&](auto& c) { return db::record_delivered(c, d.id, status); });
        fields["status"] = status;
        log::info("webhook delivered", fields);
        continue;
      }

      std::optional<milliseconds> retry_after;
      std::string error;
      if (outcome.has_response()) {
        error = "HTTP " + std::to_string(status);
        if (status == 429 || status == 503)
          if (auto header = outcome.response->header("Retry-After")) retry_after = vendors::parse_retry_after(*header);
      } else {
        error = std::string(vendors::to_string(outcome.failure)) + ": " + outcome.error;
      }
      milliseconds retry_in;
      if (outcome.failure == vendors::TransportFailure::bad_url) {
        // No retry can fix a URL we cannot parse: a delay of give_up_after lands past any give-up
        // time, so the row is marked failed now instead of being retried for a day.
        retry_in = config_.give_up_after;
      } else {
        std::lock_guard lock(rng_mutex_);
        retry_in = webhook_retry_delay(config_, d.attempts, retry_after, rng_);
      }
      const auto recorded = pool_.run([&](auto& c) {
        return db::record_failed_attempt(c, d.id, d.attempts, status, error, retry_in, config_.give_up_after);
      });
      fields["error"] = error;
      if (status != 0) fields["status"] = status;
      if (recorded == db::AttemptOutcome::gave_up) {
        log::warn("webhook delivery failed; giving up", fields);
      } else if (recorded == db::AttemptOutcome::retry_scheduled) {
        fields["retry_in_ms"] = retry_in.count();
        log::info("webhook delivery attempt failed; will retry", fields);
      } else {
        log::info("webhook delivery attempt failed; the delivery was claimed again meanwhile", fields);
      }
    } catch (const std::exception& e) {
      // The row stays claimed until its lease runs out, then it is sent again: at least once.
      fields["error"] = e.what();
      log::warn("webhook outcome not recorded; will be retried after the lease", fields);
    }
  }
  return claimed.size();
}

void WebhookDelivery::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
}

void WebhookDelivery::notify() {
  std::lock_guard lock(mutex_);
  notified_ = true;
  wake_.notify_all();
}

void WebhookDelivery::stop() {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    wake_.notify_all();
    thread = std::move(thread_);
  }
  if (thread.joinable()) thread.join();
}

void WebhookDelivery::loop() {
  for (;;) {
    milliseconds wait = options_.idle_wait;
    try {
      // A full batch suggests more are due: go again at once.
      if (run_once() >= options_.batch_size) wait = milliseconds(0);
    } catch (const std::exception& e) {
      log::warn("webhook delivery: database failure; retrying", {{"error", e.what()}});
      wait = options_.error_wait;
    }
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, wait, [&] { return stopping_ || notified_; });
    notified_ = false;
    if (stopping_) return;
  }
}

}  // namespace labelbroker::jobs
