#include "routing/circuit_breaker.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace labelbroker::routing {

const char* to_string(BreakerState state) {
  switch (state) {
    case BreakerState::closed:
      return "closed";
    case BreakerState::open:
      return "open";
    case BreakerState::half_open:
      return "half_open";
  }
  return "unknown";
}

CircuitBreaker::CircuitBreaker(BreakerOptions options) : options_(options) {
  if (options_.consecutive_failures < 1)
    throw std::invalid_argument("circuit breaker: consecutive_failures must be >= 1, got " +
                                std::to_string(options_.consecutive_failures));
  if (!(options_.failure_rate > 0 && options_.failure_rate <= 1))
    throw std::invalid_argument("circuit breaker: failure_rate must be in (0, 1], got " +
                                std::to_string(options_.failure_rate));
  if (options_.min_requests < 1)
    throw std::invalid_argument("circuit breaker: min_requests must be >= 1, got " +
                                std::to_string(options_.min_requests));
  if (options_.window.count() <= 0)
    throw std::invalid_argument("circuit breaker: window must be positive, got " +
                                std::to_string(options_.window.count()) + " ms");
  if (options_.cooldown.count() < 0)
    throw std::invalid_argument("circuit breaker: cooldown must not be negative, got " +
                                std::to_string(options_.cooldown.count()) + " ms");
}

bool CircuitBreaker::allow(TimePoint now) {
  switch (state_) {
    case BreakerState::closed:
      return true;
    case BreakerState::open:
      if (now < reopen_at_) return false;
      state_ = BreakerState::half_open;
      probe_in_flight_ = true;
      return true;
    case BreakerState::half_open:
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::release_probe() {
  if (state_ == BreakerState::half_open) probe_in_flight_ = false;
}

void CircuitBreaker::record_success(TimePoint now) {
  switch (state_) {
    case BreakerState::closed:
      consecutive_failures_ = 0;
      window_.push_back({now, false});
      prune(now);
      return;
    case BreakerState::open:
      return;  // a request sent before the breaker opened says nothing about recovery
    case BreakerState::half_open:
      close();
      return;
  }
}

void CircuitBreaker::record_failure(TimePoint now, std::optional<std::chrono::milliseconds> retry_after) {
  switch (state_) {
    case BreakerState::closed: {
      ++consecutive_failures_;
      window_.push_back({now, true});
      ++window_failures_;
      prune(now);
      const bool too_many_in_a_row = consecutive_failures_ >= options_.consecutive_failures;
      const bool rate_too_high =
          window_.size() >= static_cast<std::size_t>(options_.min_requests) &&
          static_cast<double>(window_failures_) >= options_.failure_rate * static_cast<double>(window_.size());
      if (too_many_in_a_row || rate_too_high) open(now, retry_after);
      return;
    }
    case BreakerState::open:
      // Late failure of a request sent before opening: only a Retry-After can lengthen the wait.
      if (retry_after) reopen_at_ = std::max(reopen_at_, now + *retry_after);
      return;
    case BreakerState::half_open:
      open(now, retry_after);
      return;
  }
}

BreakerState CircuitBreaker::state(TimePoint now) const {
  if (state_ == BreakerState::open && now >= reopen_at_) return BreakerState::half_open;
  return state_;
}

std::optional<CircuitBreaker::TimePoint> CircuitBreaker::opened_at() const {
  if (state_ == BreakerState::closed) return std::nullopt;
  return opened_at_;
}

std::optional<CircuitBreaker::TimePoint> CircuitBreaker::reopen_at() const {
  if (state_ == BreakerState::closed) return std::nullopt;
  return reopen_at_;
}

void CircuitBreaker::open(TimePoint now, std::optional<std::chrono::milliseconds> retry_after) {
  const auto cooldown = retry_after ? std::max(options_.cooldown, *retry_after) : options_.cooldown;
  state_ = BreakerState::open;
  probe_in_flight_ = false;
  opened_at_ = now;
  reopen_at_ = now + cooldown;
}

void CircuitBreaker::close() {
  state_ = BreakerState::closed;
  probe_in_flight_ = false;
  consecutive_failures_ = 0;
  window_.clear();
  window_failures_ = 0;
}

void CircuitBreaker::prune(TimePoint now) {
  // An outcome at exactly now - window has left the window.
  const TimePoint oldest = now - options_.window;
  while (!window_.empty() && window_.front().at <= oldest) {
    if (window_.front().failed) --window_failures_;
    window_.pop_front();
  }
}

}  // namespace labelbroker::routing
