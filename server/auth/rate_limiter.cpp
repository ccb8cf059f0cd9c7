#include "auth/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace labelbroker::auth {

RateLimiter::RateLimiter(std::chrono::milliseconds lease, std::function<Clock::time_point()> now)
    : now_(std::move(now)), lease_(lease) {}

void RateLimiter::set_lease(std::chrono::milliseconds lease) {
  std::lock_guard lock(mutex_);
  lease_ = lease;
}

void RateLimiter::set_default_policy(std::optional<RateLimitPolicy> policy) {
  std::lock_guard lock(mutex_);
  default_policy_ = policy;
  keys_.clear();
}

std::optional<RateLimitPolicy> RateLimiter::policy_for(const std::optional<RateLimitPolicy>& own) const {
  if (own) return own;
  std::lock_guard lock(mutex_);
  return default_policy_;
}

std::optional<RateLimiter::Decision> RateLimiter::decide_locally(Local& local, Clock::time_point now) const {
  if (local.tokens > 0 && now < local.lease_ends) {
    --local.tokens;
    return Decision{true, std::chrono::seconds(0)};
  }
  if (now < local.refused_until) {
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(local.refused_until - now).count();
    return Decision{false, std::chrono::seconds(std::max<long long>(1, (wait + 999) / 1000))};
  }
  return std::nullopt;
}

std::optional<RateLimiter::Decision> RateLimiter::try_local(std::int64_t key_id,
                                                            const std::optional<RateLimitPolicy>& own) {
  if (!policy_for(own)) return Decision{};
  const auto now = now_();
  std::lock_guard lock(mutex_);
  auto it = keys_.find(key_id);
  if (it == keys_.end()) return std::nullopt;
  return decide_locally(it->second, now);
}

RateLimiter::Decision RateLimiter::admit(std::int64_t key_id, const std::optional<RateLimitPolicy>& own,
                                         const TakeTokens& take) {
  const auto policy = policy_for(own);
  if (!policy) return Decision{};
  int wanted = 1;
  {
    const auto now = now_();
    std::lock_guard lock(mutex_);
    if (auto decided = decide_locally(keys_[key_id], now)) return *decided;
    const double per_lease = policy->per_second * std::chrono::duration<double>(lease_).count();
    wanted = std::clamp(static_cast<int>(std::ceil(per_lease)), 1, policy->burst);
  }
  const auto grant = take(key_id, *policy, wanted);
  const auto now = now_();
  std::lock_guard lock(mutex_);
  auto& local = keys_[key_id];
  if (grant.granted > 0) {
    // One token is this request's; the rest joins what the process may spend until the lease
    // ends. Leases taken by concurrent requests add up, each under its own shared-bucket grant.
    local.tokens = (now < local.lease_ends ? local.tokens : 0) + grant.granted - 1;
    local.lease_ends = now + lease_;
    local.refused_until = {};
    return Decision{true, std::chrono::seconds(0)};
  }
  // The bucket holds less than one token: it has one again after (1 - left) / rate seconds.
  const double wait_seconds = std::max(0.0, 1.0 - grant.tokens_left) / policy->per_second;
  local.refused_until = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait_seconds));
  return Decision{false, std::chrono::seconds(std::max<long long>(1, static_cast<long long>(std::ceil(wait_seconds))))};
}

void RateLimiter::clear() {
  std::lock_guard lock(mutex_);
  keys_.clear();
}

RateLimiter& shared_rate_limiter() {
  static RateLimiter limiter;
  return limiter;
}

}  // namespace labelbroker::auth
