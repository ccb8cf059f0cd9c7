// Pure routing pieces of #6: the per-vendor circuit breaker and the allocation step (Thompson
// scores, softmax, box projection, deficit round-robin), plus a hidden throughput benchmark.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <numeric>
#include <set>

#include "routing/allocation.hpp"
#include "routing/circuit_breaker.hpp"

using namespace labelbroker;
using namespace std::chrono_literals;
using routing::BreakerState;

namespace {

using TimePoint = routing::CircuitBreaker::TimePoint;
const TimePoint kT0 = TimePoint{} + 1000h;

routing::BreakerOptions small_breaker() {
  routing::BreakerOptions o;
  o.consecutive_failures = 3;
  o.failure_rate = 0.5;
  o.min_requests = 10;
  o.window = 10s;
  o.cooldown = 5s;
  return o;
}

double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

routing::VendorInput vendor(std::string id, std::int64_t correct, std::int64_t n, std::int64_t cost) {
  routing::VendorInput v;
  v.id = std::move(id);
  v.gold_correct = correct;
  v.gold_n = n;
  v.cost_micros = cost;
  return v;
}

}  // namespace

// ---- circuit breaker ----

TEST_CASE("breaker opens after consecutive failures and blocks until the cooldown", "[unit][breaker]") {
  routing::CircuitBreaker b(small_breaker());
  CHECK(b.state(kT0) == BreakerState::closed);
  CHECK(std::string(routing::to_string(b.state(kT0))) == "closed");
  CHECK(b.allow(kT0));
  CHECK_FALSE(b.opened_at());
  b.record_failure(kT0);
  b.record_failure(kT0 + 1ms);
  CHECK(b.state(kT0 + 1ms) == BreakerState::closed);
  b.record_failure(kT0 + 2ms);
  CHECK(b.state(kT0 + 2ms) == BreakerState::open);
  CHECK(std::string(routing::to_string(BreakerState::open)) == "open");
  REQUIRE(b.opened_at());
  CHECK(*b.opened_at() == kT0 + 2ms);
  CHECK(*b.reopen_at() == kT0 + 2ms + 5s);
  CHECK_FALSE(b.allow(kT0 + 3s));
  CHECK_FALSE(b.allow(kT0 + 2ms + 5s - 1ms));
  CHECK(b.state(kT0 + 2ms + 5s) == BreakerState::half_open);
}

TEST_CASE("a success resets the consecutive-failure count", "[unit][breaker]") {
  routing::CircuitBreaker b(small_breaker());
  b.record_failure(kT0);
  b.record_failure(kT0);
  b.record_success(kT0);
  CHECK(b.consecutive_failures() == 0);
  b.record_failure(kT0);
  b.record_failure(kT0);
  CHECK(b.state(kT0) == BreakerState::closed);
}

TEST_CASE("half-open lets one probe through, success closes, failure reopens", "[unit][breaker]") {
  routing::CircuitBreaker b(small_breaker());
  for (int i = 0; i < 3; ++i) b.record_failure(kT0);
  const auto later = kT0 + 5s;
  REQUIRE(b.state(later) == BreakerState::half_open);
  CHECK(b.allow(later));  // the probe
  CHECK(std::string(routing::to_string(b.state(later))) == "half_open");
  CHECK_FALSE(b.allow(later));  // only one at a time
  CHECK_FALSE(b.allow(later + 1s));

  SECTION("probe succeeds") {
    b.record_success(later + 1s);
    CHECK(b.state(later + 1s) == BreakerState::closed);
    CHECK(b.allow(later + 1s));
    CHECK(b.allow(later + 1s));
    CHECK(b.consecutive_failures() == 0);
    CHECK(b.window_requests() == 0);
    CHECK_FALSE(b.opened_at());
  }
  SECTION("probe fails") {
    b.record_failure(later + 1s);
    CHECK(b.state(later + 1s) == BreakerState::open);
    CHECK(*b.opened_at() == later + 1s);
    CHECK(*b.reopen_at() == later + 6s);
    CHECK_FALSE(b.allow(later + 5s));
    CHECK(b.allow(later + 6s));  // next probe
    CHECK_FALSE(b.allow(later + 6s));
  }
}

TEST_CASE("breaker opens on the failure rate over the window, and old outcomes age out", "[unit][breaker]") {
  auto opts = small_breaker();
  opts.consecutive_failures = 100;  // only the rate can open it
  routing::CircuitBreaker b(opts);

  SECTION("rate reached with enough requests") {
    // Alternating success/failure: 50% failures, never 2 in a row.
    for (int i = 0; i < 9; ++i) {
      if (i % 2 == 0) {
        b.record_failure(kT0 + i * 100ms);
      } else {
        b.record_success(kT0 + i * 100ms);
      }
    }
    CHECK(b.state(kT0 + 1s) == BreakerState::closed);  // 9 < min_requests
    b.record_success(kT0 + 1s);                        // 10 requests, 5 failures = 50%
    CHECK(b.state(kT0 + 1s) == BreakerState::closed);  // successes never open
    b.record_failure(kT0 + 1100ms);                    // 11 requests, 6 failures
    CHECK(b.state(kT0 + 1100ms) == BreakerState::open);
  }
  SECTION("failures older than the window do not count") {
    for (int i = 0; i < 8; ++i) b.record_failure(kT0 + i * 1ms);
    // 10 s later the 8 failures have aged out: 2 fresh successes + 1 failure is 1 of 3.
    const auto later = kT0 + 10s + 10ms;
    b.record_success(later);
    b.record_success(later);
    b.record_failure(later);
    CHECK(b.window_requests() == 3);
    CHECK(b.window_failures() == 1);
    CHECK(b.state(later) == BreakerState::closed);
  }
  SECTION("below min_requests a 100% failure rate does not open") {
    for (int i = 0; i < 9; ++i) b.record_failure(kT0 + i * 1ms);
    CHECK(b.state(kT0 + 9ms) == BreakerState::closed);
    b.record_failure(kT0 + 10ms);
    CHECK(b.state(kT0 + 10ms) == BreakerState::open);
  }
}

TEST_CASE("a 429 Retry-After lengthens the cooldown but never shortens it", "[unit][breaker]") {
  routing::CircuitBreaker b(small_breaker());
  SECTION("longer Retry-After wins") {
    b.record_failure(kT0);
    b.record_failure(kT0);
    b.record_failure(kT0, 20s);
    CHECK(*b.reopen_at() == kT0 + 20s);
    CHECK_FALSE(b.allow(kT0 + 19s));
    CHECK(b.allow(kT0 + 20s));
  }
  SECTION("shorter Retry-After keeps the configured cooldown") {
    for (int i = 0; i < 2; ++i) b.record_failure(kT0);
    b.record_failure(kT0, 1s);
    CHECK(*b.reopen_at() == kT0 + 5s);
  }
  SECTION("a late Retry-After while open extends the wait") {
    for (int i = 0; i < 3; ++i) b.record_failure(kT0);
    b.record_failure(kT0 + 1s, 30s);
    CHECK(*b.reopen_at() == kT0 + 31s);
    CHECK(*b.opened_at() == kT0);
  }
  SECTION("a failed probe with Retry-After") {
    for (int i = 0; i < 3; ++i) b.record_failure(kT0);
    REQUIRE(b.allow(kT0 + 5s));
    b.record_failure(kT0 + 5s, 60s);
    CHECK(*b.reopen_at() == kT0 + 65s);
  }
}

TEST_CASE("breaker rejects nonsensical options", "[unit][breaker]") {
  auto o = small_breaker();
  o.consecutive_failures = 0;
  CHECK_THROWS_AS(routing::CircuitBreaker(o), std::invalid_argument);
  o = small_breaker();
  o.failure_rate = 0;
  CHECK_THROWS_AS(routing::CircuitBreaker(o), std::invalid_argument);
  o = small_breaker();
  o.window = 0ms;
  CHECK_THROWS_AS(routing::CircuitBreaker(o), std::invalid_argument);
}

// ---- allocation: projection and softmax ----

TEST_CASE("box projection: sums to 1, stays in bounds, keeps feasible input", "[unit][allocation]") {
  SECTION("already feasible input is unchanged") {
    const std::vector<double> x = {0.2, 0.3, 0.5};
    const auto p = routing::project_to_box(x, 0.1, 0.6);
    REQUIRE(p.shares.size() == 3);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(p.shares[i] == Approx(x[i]).margin(1e-15));
    CHECK_FALSE(p.cap_unsatisfiable);
    CHECK_FALSE(p.min_share_relaxed);
  }
  SECTION("cap binds and the rest keeps its ratios") {
    const auto p = routing::project_to_box({0.9, 0.06, 0.04}, 0.0, 0.5);
    CHECK(sum(p.shares) == Approx(1).margin(1e-12));
    CHECK(p.shares[0] == Approx(0.5));
    CHECK(p.shares[1] / p.shares[2] == Approx(1.5));
  }
  SECTION("floor and cap both bind") {
    const auto p = routing::project_to_box({0.97, 0.02, 0.005, 0.005}, 0.1, 0.4);
    CHECK(sum(p.shares) == Approx(1).margin(1e-12));
    for (double s : p.shares) {
      CHECK(s >= 0.1 - 1e-12);
      CHECK(s <= 0.4 + 1e-12);
    }
    CHECK(p.shares[0] == Approx(0.4));
  }
  SECTION("random inputs always land in the box") {
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(0, 1);
    for (int trial = 0; trial < 500; ++trial) {
      const std::size_t n = 2 + trial % 9;
      std::vector<double> x(n);
      for (double& w : x) w = u(rng) * u(rng);
      const double lo = u(rng) / static_cast<double>(n);
      const double hi = std::max(lo, 1.0 / static_cast<double>(n) + u(rng) * (1 - 1.0 / static_cast<double>(n)));
      const auto p = routing::project_to_box(x, lo, hi);
      CHECK(sum(p.shares) == Approx(1).margin(1e-12));
      for (double s : p.shares) {
        CHECK(s >= lo - 1e-12);
        CHECK(s <= hi + 1e-12);
      }
      CHECK_FALSE(p.cap_unsatisfiable);
    }
  }
  SECTION("one vendor with a cap below 1 is flagged and gets everything") {
    const auto p = routing::project_to_box({1.0}, 0.0, 0.4);
    CHECK(p.cap_unsatisfiable);
    CHECK(p.effective_max_share == Approx(1));
    CHECK(p.shares[0] == Approx(1));
  }
  SECTION("n * max_share < 1 relaxes the cap to 1/n") {
    const auto p = routing::project_to_box({0.7, 0.2, 0.1}, 0.0, 0.3);
    CHECK(p.cap_unsatisfiable);
    for (double s : p.shares) CHECK(s == Approx(1.0 / 3));
  }
  SECTION("n * min_share > 1 gives equal shares") {
    const auto p = routing::project_to_box({0.7, 0.2, 0.1}, 0.4, 0.9);
    CHECK(p.min_share_relaxed);
    for (double s : p.shares) CHECK(s == Approx(1.0 / 3));
  }
  SECTION("zero weights take what the capped ones cannot") {
    const auto p = routing::project_to_box({1.0, 0.0, 0.0}, 0.0, 0.5);
    CHECK(p.shares[0] == Approx(0.5));
    CHECK(p.shares[1] == Approx(0.25));
    CHECK(p.shares[2] == Approx(0.25));
  }
  CHECK_THROWS_AS(routing::project_to_box({0.5, 0.5}, 0.6, 0.4), std::invalid_argument);
  CHECK_THROWS_AS(routing::project_to_box({-0.5, 0.5}, 0.0, 1.0), std::invalid_argument);
}

TEST_CASE("softmax is normalised and monotonic in the score", "[unit][allocation]") {
  const std::vector<double> scores = {0.5, 0.9, 0.7, 0.1};
  for (double t : {0.01, 0.1, 1.0, 10.0}) {
    const auto s = routing::softmax(scores, t);
    CHECK(sum(s) == Approx(1));
    CHECK(s[1] > s[2]);
    CHECK(s[2] > s[0]);
    CHECK(s[0] > s[3]);
  }
  // Lower temperature concentrates more on the best.
  CHECK(routing::softmax(scores, 0.05)[1] > routing::softmax(scores, 0.5)[1]);
  CHECK(routing::softmax({1000, 0}, 0.01)[0] == Approx(1));  // no overflow
  CHECK_THROWS_AS(routing::softmax(scores, 0), std::invalid_argument);
}

// ---- allocation: scores and shares ----

TEST_CASE("quality prefers the accurate vendor, cost the cheap one per correct label", "[unit][allocation]") {
  // A: 0.95 accurate at $0.10; B: 0.80 accurate at $0.04. Gold counts tight enough that the
  // Thompson draws stay near the means.
  const std::vector<routing::VendorInput> vendors = {vendor("a", 1900, 2000, 100000), vendor("b", 1600, 2000, 40000)};
  std::mt19937_64 rng(42);
  routing::AllocationOptions opts;
  opts.temperature = 0.1;
  for (int i = 0; i < 50; ++i) {
    opts.optimize = routing::Optimize::quality;
    auto d = routing::decide_shares(vendors, opts, rng);
    CHECK(d.vendors[0].target_share > d.vendors[1].target_share);
    CHECK(d.vendors[0].score > d.vendors[1].score);
    opts.optimize = routing::Optimize::cost;
    d = routing::decide_shares(vendors, opts, rng);
    CHECK(d.vendors[1].target_share > d.vendors[0].target_share);
    CHECK(d.vendors[1].cost_per_correct_micros < d.vendors[0].cost_per_correct_micros);
    opts.optimize = routing::Optimize::balanced;
    d = routing::decide_shares(vendors, opts, rng);
    CHECK(sum({d.vendors[0].target_share, d.vendors[1].target_share}) == Approx(1));
  }
  CHECK(routing::parse_optimize("cost") == routing::Optimize::cost);
  CHECK_FALSE(routing::parse_optimize("cheap"));
  CHECK(std::string(routing::to_string(routing::Optimize::balanced)) == "balanced");
}

TEST_CASE("decisions carry ineligible vendors, realised shares and flags", "[unit][allocation]") {
  auto a = vendor("a", 90, 100, 50000);
  a.window_items = 30;
  auto b = vendor("b", 80, 100, 50000);
  b.window_items = 10;
  b.eligible = false;
  b.removal_reason = "breaker open";
  std::mt19937_64 rng(1);
  routing::AllocationOptions opts;
  opts.max_share = 0.6;
  routing::DeficitAllocator alloc;
  const auto result = routing::allocate({a, b}, 10, 2, opts, rng, alloc);
  const auto& d = result.decision;
  REQUIRE(d.vendors.size() == 2);
  CHECK(d.cap_unsatisfiable);  // one eligible vendor, cap 0.6
  CHECK(d.vendors[0].target_share == Approx(1));
  CHECK(d.vendors[0].realised_share_before == Approx(0.75));
  CHECK(d.vendors[1].realised_share_before == Approx(0.25));
  CHECK(d.vendors[1].removal_reason == "breaker open");
  CHECK(d.vendors[1].target_share == 0);
  CHECK(d.vendors[1].chosen_count == 0);
  CHECK(d.vendors[0].chosen_count == 10);  // redundancy 2 but only one vendor: one each
  for (const auto& item : result.items) CHECK(item == std::vector<int>{0});
}

TEST_CASE("Thompson sampling with a fixed seed is reproducible", "[unit][allocation]") {
  const std::vector<routing::VendorInput> vendors = {vendor("a", 5, 10, 1000), vendor("b", 3, 4, 2000),
                                                     vendor("c", 0, 0, 1500)};
  routing::AllocationOptions opts;
  std::mt19937_64 r1(123), r2(123);
  routing::DeficitAllocator d1, d2;
  for (int i = 0; i < 20; ++i) {
    const auto x = routing::allocate(vendors, 50, 2, opts, r1, d1);
    const auto y = routing::allocate(vendors, 50, 2, opts, r2, d2);
    for (std::size_t v = 0; v < vendors.size(); ++v) {
      CHECK(x.decision.vendors[v].sampled_p == y.decision.vendors[v].sampled_p);
      CHECK(x.decision.vendors[v].target_share == y.decision.vendors[v].target_share);
    }
    CHECK(x.items == y.items);
  }
  CHECK(d1.counters() == d2.counters());
}

TEST_CASE("a vendor with clearly worse gold gets a lower average share", "[unit][allocation]") {
  const std::vector<routing::VendorInput> vendors = {vendor("good", 45, 50, 50000), vendor("bad", 30, 50, 50000),
                                                     vendor("new", 0, 0, 50000)};
  std::mt19937_64 rng(99);
  for (auto mode : {routing::Optimize::quality, routing::Optimize::balanced, routing::Optimize::cost}) {
    routing::AllocationOptions opts;
    opts.optimize = mode;
    double good = 0, bad = 0;
    for (int i = 0; i < 2000; ++i) {
      const auto d = routing::decide_shares(vendors, opts, rng);
      good += d.vendors[0].target_share;
      bad += d.vendors[1].target_share;
    }
    INFO(routing::to_string(mode) << " good " << good / 2000 << " bad " << bad / 2000);
    CHECK(good > bad * 1.2);
  }
}

// ---- allocation: deficit round-robin ----

TEST_CASE("deficit allocator: distinct vendors, counts within 1 of target, deterministic", "[unit][allocation]") {
  const std::vector<std::vector<double>> share_sets = {
      {0.25, 0.25, 0.25, 0.25}, {0.5, 0.3, 0.2}, {0.7, 0.2, 0.1}, {0.01, 0.09, 0.4, 0.5},
      {0.123, 0.2, 0.177, 0.3, 0.05, 0.15}, {1.0 / 3, 1.0 / 3, 1.0 / 3}, {0.6, 0.0, 0.4}};
  for (const auto& shares : share_sets) {
    for (int redundancy : {1, 2, 3}) {
      const std::size_t positive = static_cast<std::size_t>(std::count_if(shares.begin(), shares.end(), [](double s) { return s > 0; }));
      const std::size_t per_item = std::min<std::size_t>(static_cast<std::size_t>(redundancy), positive);
      // Shares above 1 / per_item cannot be met with distinct vendors; the allocator caps them.
      const auto effective = routing::project_to_box(shares, 0, 1.0 / static_cast<double>(per_item)).shares;
      routing::DeficitAllocator alloc;
      const std::size_t items = 10000;
      // In uneven batches, as dispatch would call it.
      std::vector<std::vector<int>> all;
      std::size_t done = 0;
      for (std::size_t batch = 1; done < items; batch = batch * 3 + 1) {
        const std::size_t n = std::min(batch, items - done);
        auto part = alloc.assign(n, redundancy, shares);
        all.insert(all.end(), part.begin(), part.end());
        done += n;
      }
      std::vector<double> counts(shares.size());
      for (const auto& item : all) {
        REQUIRE(item.size() == per_item);
        CHECK(std::set<int>(item.begin(), item.end()).size() == item.size());
        for (int v : item) counts[static_cast<std::size_t>(v)] += 1;
      }
      const double judgments = static_cast<double>(items * per_item);
      for (std::size_t v = 0; v < shares.size(); ++v) {
        INFO("shares #" << (&shares - share_sets.data()) << " r=" << redundancy << " vendor " << v);
        CHECK(std::abs(counts[v] - effective[v] * judgments) <= 1.0 + 1e-6);
      }
      // Same inputs, same result.
      routing::DeficitAllocator again;
      std::vector<std::vector<int>> replay;
      done = 0;
      for (std::size_t batch = 1; done < items; batch = batch * 3 + 1) {
        const std::size_t n = std::min(batch, items - done);
        auto part = again.assign(n, redundancy, shares);
        replay.insert(replay.end(), part.begin(), part.end());
        done += n;
      }
      CHECK(replay == all);
    }
  }
}

TEST_CASE("deficit allocator stays strictly within 1 of target for random shares", "[unit][allocation]") {
  std::mt19937_64 rng(2024);
  std::uniform_real_distribution<double> u(0, 1);
  double worst = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t n = 2 + static_cast<std::size_t>(trial) % 11;
    std::vector<double> shares(n);
    for (double& s : shares) s = u(rng);
    const double total = sum(shares);
    for (double& s : shares) s /= total;
    for (int redundancy : {1, 2, 3}) {
      const std::size_t per_item = std::min<std::size_t>(static_cast<std::size_t>(redundancy), n);
      const auto effective = routing::project_to_box(shares, 0, 1.0 / static_cast<double>(per_item)).shares;
      routing::DeficitAllocator alloc;
      std::vector<double> counts(n);
      for (std::size_t item = 1; item <= 2000; ++item) {
        const auto picked = alloc.assign(1, redundancy, shares);
        for (int v : picked.front()) counts[static_cast<std::size_t>(v)] += 1;
        for (std::size_t v = 0; v < n; ++v)
          worst = std::max(worst, std::abs(counts[v] - effective[v] * static_cast<double>(per_item * item)));
      }
    }
  }
  CHECK(worst < 1);
}

TEST_CASE("deficit allocator counters round-trip through restore", "[unit][allocation]") {
  const std::vector<double> shares = {0.5, 0.3, 0.2};
  routing::DeficitAllocator a;
  a.assign(37, 2, shares);
  routing::DeficitAllocator b(a.counters());
  CHECK(a.assign(100, 2, shares) == b.assign(100, 2, shares));
  routing::DeficitAllocator c;
  c.restore({0.0, 0.0});
  CHECK_THROWS_AS(c.assign(1, 1, shares), std::invalid_argument);
  // No usable vendor: items get no vendors.
  routing::DeficitAllocator d;
  const auto none = d.assign(3, 2, {0.0, 0.0});
  REQUIRE(none.size() == 3);
  CHECK(none[0].empty());
}

// ---- benchmark (hidden) ----

TEST_CASE("allocation throughput: item routing decisions per second, 10 vendors", "[.bench][allocation]") {
  std::vector<routing::VendorInput> vendors;
  for (int i = 0; i < 10; ++i)
    vendors.push_back(vendor("v" + std::to_string(i), 80 + i, 100, 30000 + 5000 * i));
  routing::AllocationOptions opts;
  opts.max_share = 0.3;
  std::mt19937_64 rng(5);
  for (int redundancy : {1, 3}) {
    routing::DeficitAllocator alloc;
    constexpr std::size_t kBatch = 100;
    constexpr int kBatches = 20000;
    std::int64_t checksum = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int b = 0; b < kBatches; ++b) {
      const auto result = routing::allocate(vendors, kBatch, redundancy, opts, rng, alloc);
      checksum += result.decision.vendors[0].chosen_count;
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    const double per_second = static_cast<double>(kBatch) * kBatches / elapsed.count();
    std::printf("allocation bench: 10 vendors, redundancy %d, batches of %zu: %.0f item decisions/s "
                "(target >= 1000000) [checksum %lld]\n",
                redundancy, kBatch, per_second, static_cast<long long>(checksum));
    CHECK(per_second >= 1e6);
  }
}
