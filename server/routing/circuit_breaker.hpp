#pragma once
// A per-vendor circuit breaker: stops sending work to a vendor whose requests keep failing, waits a
// cooldown, then lets one probe request through to see whether it has recovered.
//
//   closed    -- every request is allowed. Opens on `consecutive_failures` failures in a row, or
//                when at least `min_requests` outcomes fall in the sliding `window` and the share
//                of failures among them is >= `failure_rate`.
//   open      -- nothing is allowed until the cooldown has passed (reopen_at()).
//   half_open -- the cooldown has passed: exactly one probe at a time is allowed. Its success
//                closes the breaker and forgets the history; its failure opens it again.
//
// A failure that carries a 429's Retry-After makes the cooldown of the opening it causes (or of
// the current opening, if the breaker is already open) max(cooldown, retry_after).
//
// Pure: no I/O and no clock reads; every call takes `now` from the caller, so tests drive time.
// Not thread-safe: the caller serialises all calls on one breaker (holds its lock). Outcomes that
// arrive while the breaker is open (requests sent before it opened) do not change the state,
// except that a late Retry-After can lengthen the cooldown. The caller must report the outcome of
// every request that allow() let through in half_open, or no further probe is allowed.
// The constructor throws std::invalid_argument on nonsensical options; nothing else throws.
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>

namespace labelbroker::routing {

enum class BreakerState { closed, open, half_open };

const char* to_string(BreakerState state);

struct BreakerOptions {
  int consecutive_failures = 5;  // failures in a row that open the breaker; >= 1
  double failure_rate = 0.5;     // failure share in the window that opens it; in (0, 1]
  int min_requests = 20;         // outcomes the window needs before failure_rate applies; >= 1
  std::chrono::milliseconds window{60000};    // sliding window for failure_rate; > 0
  std::chrono::milliseconds cooldown{30000};  // open -> half_open after this long; >= 0
};

class CircuitBreaker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit CircuitBreaker(BreakerOptions options = {});

  // Whether a request may be sent now. In open, turns half_open once the cooldown has passed and
  // allows that call as the probe; in half_open allows one probe until its outcome is recorded.
  bool allow(TimePoint now);

  // The probe allow() let through was not used (nothing to send): the next allow() may probe.
  void release_probe();

  void record_success(TimePoint now);
  // `retry_after` is the vendor's Retry-After on a 429, if it sent one.
  void record_failure(TimePoint now, std::optional<std::chrono::milliseconds> retry_after = std::nullopt);

  // Whether a probe is out (half_open only).
  bool probe_in_flight() const { return probe_in_flight_; }

  // The state as allow() would see it: an open breaker whose cooldown has passed reads half_open.
  BreakerState state(TimePoint now) const;

  // When the breaker last opened and when it may next let a probe through; nullopt while closed.
  std::optional<TimePoint> opened_at() const;
  std::optional<TimePoint> reopen_at() const;

  int consecutive_failures() const { return consecutive_failures_; }
  // Outcomes (and failures among them) in the window as of the last call that recorded or pruned.
  std::size_t window_requests() const { return window_.size(); }
  std::size_t window_failures() const { return window_failures_; }
  const BreakerOptions& options() const { return options_; }

 private:
  struct Outcome {
    TimePoint at;
    bool failed;
  };
  void open(TimePoint now, std::optional<std::chrono::milliseconds> retry_after);
  void close();
  void prune(TimePoint now);

  BreakerOptions options_;
  BreakerState state_ = BreakerState::closed;  // stored; open may read half_open via state(now)
  bool probe_in_flight_ = false;
  int consecutive_failures_ = 0;
  std::deque<Outcome> window_;  // closed-state outcomes, oldest first
  std::size_t window_failures_ = 0;
  TimePoint opened_at_{};
  TimePoint reopen_at_{};
};

}  // namespace labelbroker::routing
