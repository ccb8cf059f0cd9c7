#pragma once
// Per-key rate limits (requests per second with a burst) that hold across every broker process
// sharing one database.
//
// The allowance lives in one token bucket per key in PostgreSQL (schema/0007, take_rate_tokens).
// A process does not ask the database per request: it takes a lease of up to `lease` worth of
// the key's rate (at least one token) and spends it locally; tokens it has not spent when the
// lease ends are dropped, never handed back. So the processes together admit at most
// burst + rate x elapsed time, and a busy key costs one round trip per lease. After a refusal the
// process also refuses locally until the bucket can hold a token again (the Retry-After), so a
// client that hammers a limited key does not hammer the database too.
//
// The database call is passed in (`take`), which keeps this class free of storage code and
// lets tests drive it with a bucket of their own.
// Thread safety: every member may be called concurrently; take() runs without the lock held.
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace labelbroker::auth {

struct RateLimitPolicy {
  double per_second = 0;  // > 0
  int burst = 1;          // >= 1
};

struct TokenGrant {
  int granted = 0;
  double tokens_left = 0;  // what the shared bucket holds after the grant
};

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  using TakeTokens = std::function<TokenGrant(std::int64_t key_id, const RateLimitPolicy& policy, int wanted)>;

  struct Decision {
    bool allowed = true;
    std::chrono::seconds retry_after{0};  // for a refusal: whole seconds, at least 1
  };

  explicit RateLimiter(std::chrono::milliseconds lease = std::chrono::milliseconds(100),
                       std::function<Clock::time_point()> now = Clock::now);

  void set_lease(std::chrono::milliseconds lease);
  // The limit of keys without one of their own; nullopt: such keys are not limited.
  void set_default_policy(std::optional<RateLimitPolicy> policy);
  std::optional<RateLimitPolicy> policy_for(const std::optional<RateLimitPolicy>& own) const;

  // Spends one local token of the key if there is one; never blocks or calls take(). nullopt:
  // decide with admit(). A key without a policy is always allowed here.
  std::optional<Decision> try_local(std::int64_t key_id, const std::optional<RateLimitPolicy>& own);

  // The full decision: local tokens, a local refusal still in force, or a new lease from `take`
  // (whose exceptions propagate; nothing is recorded then).
  Decision admit(std::int64_t key_id, const std::optional<RateLimitPolicy>& own, const TakeTokens& take);

  void clear();

 private:
  struct Local {
    int tokens = 0;
    Clock::time_point lease_ends{};
    Clock::time_point refused_until{};
  };
  std::optional<Decision> decide_locally(Local& local, Clock::time_point now) const;

  std::function<Clock::time_point()> now_;
  mutable std::mutex mutex_;
  std::chrono::milliseconds lease_;
  std::optional<RateLimitPolicy> default_policy_;
  std::unordered_map<std::int64_t, Local> keys_;
};

// The limiter require_role() uses; the service sets its lease and default policy from config.
RateLimiter& shared_rate_limiter();

}  // namespace labelbroker::auth
