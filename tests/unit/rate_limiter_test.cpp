// The per-process side of rate limiting (auth::RateLimiter) against a token bucket of the test's
// own and a hand-driven clock: leases, their expiry, local refusals and keys without a limit.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "auth/rate_limiter.hpp"

using namespace labelbroker;
using Clock = auth::RateLimiter::Clock;

namespace {

// The shared bucket as schema/0007's take_rate_tokens keeps it, on the same clock.
struct Bucket {
  Clock::time_point* now;
  double tokens = -1;
  Clock::time_point refreshed;
  int calls = 0;
  std::vector<int> asked;

  auth::TokenGrant take(const auth::RateLimitPolicy& p, int wanted) {
    ++calls;
    asked.push_back(wanted);
    if (tokens < 0) {
      tokens = p.burst;
      refreshed = *now;
    }
    tokens = std::min<double>(p.burst, tokens + std::chrono::duration<double>(*now - refreshed).count() * p.per_second);
    refreshed = *now;
    const int granted = std::min(wanted, static_cast<int>(std::floor(tokens)));
    tokens -= granted;
    return {granted, tokens};
  }
};

}  // namespace

TEST_CASE("rate limiter: leases a share of the rate, spends it locally and drops it when the lease ends",
          "[rate-limit]") {
  Clock::time_point now{};
  auth::RateLimiter limiter(std::chrono::milliseconds(100), [&] { return now; });
  Bucket bucket{&now, -1, {}, 0, {}};
  const auth::RateLimitPolicy policy{100, 50};  // 10 requests' worth per 100 ms lease
  auto take = [&](std::int64_t, const auth::RateLimitPolicy& p, int wanted) { return bucket.take(p, wanted); };

  CHECK_FALSE(limiter.try_local(1, policy));  // nothing leased yet: the caller must ask
  REQUIRE(limiter.admit(1, policy, take).allowed);
  CHECK(bucket.asked == std::vector<int>{10});
  // The other nine come from the lease, without the bucket and also on the fast path.
  for (int i = 0; i < 8; ++i) CHECK(limiter.admit(1, policy, take).allowed);
  auto local = limiter.try_local(1, policy);
  REQUIRE(local);
  CHECK(local->allowed);
  CHECK(bucket.calls == 1);
  CHECK_FALSE(limiter.try_local(1, policy));  // spent

  // A lease's leftovers are dropped when it ends, never spent later.
  REQUIRE(limiter.admit(1, policy, take).allowed);  // new lease of 10: one spent
  CHECK(bucket.calls == 2);
  now += std::chrono::milliseconds(150);
  CHECK_FALSE(limiter.try_local(1, policy));
  REQUIRE(limiter.admit(1, policy, take).allowed);
  CHECK(bucket.calls == 3);
}

TEST_CASE("rate limiter: a refusal holds locally until the bucket can have a token again", "[rate-limit]") {
  Clock::time_point now{};
  auth::RateLimiter limiter(std::chrono::milliseconds(100), [&] { return now; });
  Bucket bucket{&now, -1, {}, 0, {}};
  const auth::RateLimitPolicy policy{0.5, 2};  // one token per 2 s
  auto take = [&](std::int64_t, const auth::RateLimitPolicy& p, int wanted) { return bucket.take(p, wanted); };

  CHECK(limiter.admit(7, policy, take).allowed);
  CHECK(limiter.admit(7, policy, take).allowed);
  auto refused = limiter.admit(7, policy, take);
  CHECK_FALSE(refused.allowed);
  CHECK(refused.retry_after == std::chrono::seconds(2));
  const int calls = bucket.calls;
  now += std::chrono::milliseconds(1500);
  auto still = limiter.admit(7, policy, take);  // refused without asking the bucket
  CHECK_FALSE(still.allowed);
  CHECK(still.retry_after == std::chrono::seconds(1));
  CHECK(bucket.calls == calls);
  auto fast = limiter.try_local(7, policy);
  REQUIRE(fast);
  CHECK_FALSE(fast->allowed);
  now += std::chrono::milliseconds(600);
  CHECK(limiter.admit(7, policy, take).allowed);
  CHECK(bucket.calls == calls + 1);
}

TEST_CASE("rate limiter: keys without a limit pass, the default applies to them once set", "[rate-limit]") {
  Clock::time_point now{};
  auth::RateLimiter limiter(std::chrono::milliseconds(100), [&] { return now; });
  int calls = 0;
  auto take = [&](std::int64_t, const auth::RateLimitPolicy&, int) {
    ++calls;
    return auth::TokenGrant{0, 0.0};
  };
  for (int i = 0; i < 100; ++i) CHECK(limiter.admit(3, std::nullopt, take).allowed);
  REQUIRE(limiter.try_local(3, std::nullopt));
  CHECK(calls == 0);
  limiter.set_default_policy(auth::RateLimitPolicy{1, 1});
  CHECK_FALSE(limiter.admit(3, std::nullopt, take).allowed);
  CHECK(calls == 1);
  // A failing bucket is the caller's to handle: nothing is recorded, the next request asks again.
  auto failing = [](std::int64_t, const auth::RateLimitPolicy&, int) -> auth::TokenGrant {
    throw std::runtime_error("database down");
  };
  CHECK_THROWS(limiter.admit(4, auth::RateLimitPolicy{1, 1}, failing));
  CHECK_FALSE(limiter.try_local(4, auth::RateLimitPolicy{1, 1}));
}
