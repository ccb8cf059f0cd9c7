// The routing policy's decisions (routing/router.hpp): eligibility filters in order with their
// reasons, the quality floor on thin and thick evidence, share caps, re-routing, discounted
// evidence. Pure: no database, no HTTP.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "routing/router.hpp"

using namespace labelbroker;
using routing::Removal;

namespace {

routing::VendorFacts vendor(std::string id, std::int64_t cost = 100000) {
  routing::VendorFacts v;
  v.id = std::move(id);
  v.capabilities.task_types = {vendors::TaskType::classification};
  v.capabilities.expertise = {vendors::Expertise::general};
  v.cost_micros = cost;
  return v;
}

routing::JobFacts job() {
  routing::JobFacts j;
  j.job_id = "job-1";
  j.team_id = 7;
  j.domain = "medical";
  j.redundancy = 1;
  return j;
}

std::vector<Removal> removals(const std::vector<routing::Verdict>& verdicts) {
  std::vector<Removal> out;
  for (const auto& v : verdicts) out.push_back(v.removal);
  return out;
}

}  // namespace

TEST_CASE("each filter removes a vendor with its own reason, in the documented order", "[unit][routing-policy]") {
  routing::Router router;
  auto j = job();
  j.deny = {"denied-by-job"};
  j.team_deny = {"denied-by-team", "denied-by-job"};
  j.min_vendor_accuracy = 0.8;
  std::vector<routing::VendorFacts> v;
  v.push_back(vendor("ok"));
  v.push_back(vendor("no-domain"));
  v.back().capabilities.domains = {"legal"};
  v.push_back(vendor("denied-by-job"));
  v.push_back(vendor("denied-by-team"));
  v.push_back(vendor("disabled"));
  v.back().enabled = false;
  v.push_back(vendor("drained"));
  v.back().weight = 0;
  v.push_back(vendor("broken"));
  v.back().breaker = routing::BreakerState::open;
  v.back().breaker_allows = false;
  v.push_back(vendor("full"));
  v.back().max_in_flight = 10;
  v.back().in_flight = 10;
  v.push_back(vendor("spent"));
  v.back().monthly_cap_micros = 1000000;
  v.back().monthly_spend_micros = 950000;
  v.push_back(vendor("bad"));
  v.back().gold_correct = 60;
  v.back().gold_n = 100;
  const auto verdicts = router.filter(j, v);
  CHECK(removals(verdicts) == std::vector<Removal>{Removal::none, Removal::capability, Removal::job_deny_list,
                                                    Removal::team_deny_list, Removal::disabled, Removal::drained,
                                                    Removal::breaker_open, Removal::at_capacity,
                                                    Removal::vendor_spend_cap, Removal::below_quality_floor});
  CHECK(verdicts[9].detail.find("< floor 0.80") != std::string::npos);
  CHECK(verdicts[6].detail == "circuit breaker open");

  // The job's allow list comes before its deny list; a disabled vendor that is also denied by the
  // team is reported as denied (the earlier filter).
  j.allow = {"ok", "disabled"};
  const auto allowed = removals(router.filter(j, v));
  CHECK(allowed[0] == Removal::none);
  CHECK(allowed[2] == Removal::job_allow_list);
  CHECK(allowed[4] == Removal::disabled);

  // A team over its monthly cap removes every otherwise eligible vendor.
  j.allow.clear();
  j.team_monthly_cap_micros = 500000;
  j.team_monthly_spend_micros = 450000;
  CHECK(router.filter(j, v)[0].removal == Removal::team_spend_cap);
}

TEST_CASE("a vendor too slow for the time a job has left is late for its deadline", "[unit][routing-policy]") {
  routing::Router router;
  auto j = job();
  auto slow = vendor("slow");
  slow.median_latency_s = 600;
  auto quick = vendor("quick");
  quick.median_latency_s = 30;
  auto unknown = vendor("unknown");  // no answers yet: nothing says it is slow
  CHECK(removals(router.filter(j, {slow, quick, unknown})) ==
        std::vector<Removal>{Removal::none, Removal::none, Removal::none});  // no deadline given
  j.seconds_to_deadline = 300;
  const auto verdicts = router.filter(j, {slow, quick, unknown});
  CHECK(removals(verdicts) == std::vector<Removal>{Removal::late_for_deadline, Removal::none, Removal::none});
  CHECK(verdicts[0].detail == "median answer in 600 s, 300 s left");
}

TEST_CASE("the quality floor keeps a vendor while its evidence is thin", "[unit][routing-policy]") {
  routing::Router router;
  auto j = job();
  j.min_vendor_accuracy = 0.85;
  auto thin = vendor("thin");
  thin.gold_correct = 2;  // 2 of 3 right: mean 0.6, but the 90% interval still reaches 0.85
  thin.gold_n = 3;
  auto thick = vendor("thick");
  thick.gold_correct = 300;  // same rate, much more evidence
  thick.gold_n = 500;
  auto good = vendor("good");
  good.gold_correct = 460;
  good.gold_n = 500;
  const auto r = removals(router.filter(j, {thin, thick, good}));
  CHECK(r == std::vector<Removal>{Removal::none, Removal::below_quality_floor, Removal::none});
}

TEST_CASE("floored vendors come back to be measured once their evidence has faded", "[unit][routing-policy]") {
  routing::Router router;  // half-life 6 h, floor needs 10 effective answers
  auto j = job();
  j.min_vendor_accuracy = 0.85;
  auto bad = vendor("bad");
  bad.gold_correct = 30;  // 60% right on a memory of 50 answers
  bad.gold_n = 50;
  CHECK(router.filter(j, {bad})[0].removal == Removal::below_quality_floor);
  bad.evidence_age_hours = 6;  // half the weight: 15 of 25, still clearly below
  CHECK(router.filter(j, {bad})[0].removal == Removal::below_quality_floor);
  bad.evidence_age_hours = 18;  // 3.75 of 6.25: too little to judge; it gets work and new gold
  CHECK(router.filter(j, {bad})[0].removal == Removal::none);
  const auto faded = routing::effective_evidence(bad, router.options());
  CHECK(faded.n == Approx(6.25));
  CHECK(faded.correct == Approx(3.75));

  // A new vendor's first wrong answer is not enough to exclude it.
  auto fresh = vendor("fresh");
  fresh.gold_n = 1;
  CHECK(router.filter(j, {fresh})[0].removal == Removal::none);
}

TEST_CASE("a vendor over its share cap in the window takes no more while others can", "[unit][routing-policy]") {
  routing::RoutingOptions options;
  options.max_share = 0.5;
  options.domain_max_share["medical"] = 0.4;
  routing::Router router(options);
  CHECK(options.max_share_for("medical") == Approx(0.4));
  CHECK(options.max_share_for("legal") == Approx(0.5));

  auto a = vendor("a");
  a.window_judgments = 450;  // 0.45 >= medical cap 0.4
  auto b = vendor("b");
  b.window_judgments = 550;
  auto c = vendor("c");
  c.window_judgments = 0;
  auto j = job();
  auto verdicts = router.filter(j, {a, b, c});
  CHECK(removals(verdicts) == std::vector<Removal>{Removal::over_share_cap, Removal::over_share_cap, Removal::none});
  CHECK(verdicts[0].detail.find("cap 0.400") != std::string::npos);

  // With no other vendor eligible the cap cannot hold: nobody is removed for it.
  c.enabled = false;
  CHECK(removals(router.filter(j, {a, b, c})) ==
        std::vector<Removal>{Removal::none, Removal::none, Removal::disabled});

  // A small window is not judged at all.
  a.window_judgments = 45;
  b.window_judgments = 5;
  c.enabled = true;
  CHECK(removals(router.filter(j, {a, b, c}))[0] == Removal::none);

  // A team cap tighter than the rest applies to that team only.
  CHECK(options.max_share_for("legal", 0.2) == Approx(0.2));
  CHECK(options.max_share_for("medical", 0.45) == Approx(0.4));
}

TEST_CASE("route gives distinct vendors per item, keeps shares in the box and persists counters",
          "[unit][routing-policy]") {
  routing::RoutingOptions options;
  options.max_share = 0.5;
  options.min_share = 0.05;
  routing::Router router(options);
  auto j = job();
  j.redundancy = 2;
  j.optimize = routing::Optimize::quality;
  std::vector<routing::VendorFacts> v = {vendor("good"), vendor("mid"), vendor("weak"), vendor("off")};
  v[0].gold_correct = 950, v[0].gold_n = 1000;
  v[1].gold_correct = 850, v[1].gold_n = 1000;
  v[2].gold_correct = 600, v[2].gold_n = 1000;
  v[3].enabled = false;
  std::mt19937_64 rng(42);
  routing::CounterBook counters;
  std::map<std::string, int> judgments;
  for (int batch = 0; batch < 20; ++batch) {
    auto result = router.route(j, v, 100, rng, counters);
    REQUIRE(result.items.size() == 100);
    CHECK(result.verdicts[3].removal == Removal::disabled);
    CHECK(result.decision.vendors[3].removal_reason.rfind("disabled", 0) == 0);
    for (const auto& item : result.items) {
      REQUIRE(item.size() == 2);
      CHECK(item[0] != item[1]);
      for (const auto& id : item) ++judgments[id];
    }
  }
  CHECK(judgments.count("off") == 0);
  // 4,000 judgments: the best vendor at the cap (0.5), the weakest at least at the floor.
  CHECK(judgments["good"] == Approx(2000).margin(2));
  CHECK(judgments["weak"] >= 0.05 * 4000 - 2);
  CHECK(counters.size() == 4);

  // The same seed and the same counters give the same decision: a restart that restores the
  // counters continues the sequence.
  routing::CounterBook copy = counters;
  std::mt19937_64 r1(7), r2(7);
  CHECK(router.route(j, v, 50, r1, counters).items == router.route(j, v, 50, r2, copy).items);
}

TEST_CASE("one eligible vendor is routed to anyway and the decision says the cap cannot hold",
          "[unit][routing-policy]") {
  routing::Router router;
  auto j = job();
  std::vector<routing::VendorFacts> v = {vendor("only"), vendor("broken")};
  v[1].breaker_allows = false;
  v[1].breaker = routing::BreakerState::open;
  std::mt19937_64 rng(1);
  routing::CounterBook counters;
  const auto result = router.route(j, v, 10, rng, counters);
  CHECK(result.decision.cap_unsatisfiable);
  for (const auto& item : result.items) CHECK(item == std::vector<std::string>{"only"});
  CHECK(result.decision.vendors[1].removal_reason.rfind("breaker_open", 0) == 0);
}

TEST_CASE("reroute excludes the item's vendors and ignores the share cap only as a last resort",
          "[unit][routing-policy]") {
  routing::Router router;
  auto j = job();
  std::vector<routing::VendorFacts> v = {vendor("a"), vendor("b"), vendor("c")};
  std::mt19937_64 rng(3);
  routing::CounterBook counters;
  for (int i = 0; i < 50; ++i) {
    auto next = router.reroute(j, v, {"a"}, rng, counters);
    REQUIRE(next);
    CHECK(*next != "a");
  }
  CHECK_FALSE(router.reroute(j, v, {"a", "b", "c"}, rng, counters));

  // b is over the cap, c is used: b still takes the item rather than leaving it without a vendor.
  v[0].window_judgments = 0;
  v[1].window_judgments = 900;
  v[2].window_judgments = 100;
  v[0].enabled = false;
  auto last = router.reroute(j, v, {"c"}, rng, counters);
  REQUIRE(last);
  CHECK(*last == "b");
}

TEST_CASE("discounted evidence forgets old gold at the configured rate", "[unit][routing-policy]") {
  routing::DiscountedEvidence e;
  e.observe(920, 1000, 0.98);  // a long good record, mostly forgotten already within the batch
  CHECK(e.correct / e.n == Approx(0.92));
  CHECK(e.n == Approx(50).epsilon(0.001));  // 1 + 0.98 + ... + 0.98^999
  routing::DiscountedEvidence one_by_one;
  for (int i = 0; i < 1000; ++i) one_by_one.observe(1, 1, 0.98);
  CHECK(one_by_one.n == Approx(e.n));
  for (int i = 0; i < 300; ++i) e.observe(i % 3 == 0 ? 0 : 1, 1, 0.98);  // 2/3 right from now on
  CHECK(e.correct / e.n == Approx(2.0 / 3).margin(0.02));
  CHECK(e.n < 60);  // memory of about 1 / (1 - 0.98) = 50 observations
  CHECK(e.correct <= e.n);
}

// The whole policy (filters, including the quality floor's interval, then allocation and counts)
// as the planner runs it: not part of the suite; run it with labelbroker_tests "[.bench][routing-policy]".
TEST_CASE("routing policy throughput: item decisions per second, 10 vendors", "[.bench][routing-policy]") {
  routing::Router router;
  std::vector<routing::VendorFacts> vendors;
  for (int i = 0; i < 10; ++i) {
    vendors.push_back(vendor("v" + std::to_string(i), 30000 + 5000 * i));
    vendors.back().gold_correct = 40 + i;
    vendors.back().gold_n = 50;
    vendors.back().window_judgments = 1000 + 100 * i;
  }
  auto j = job();
  j.min_vendor_accuracy = 0.7;
  std::mt19937_64 rng(5);
  for (int redundancy : {1, 3}) {
    j.redundancy = redundancy;
    routing::CounterBook counters;
    constexpr std::size_t kBatch = 100;
    constexpr int kBatches = 20000;
    std::size_t checksum = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int b = 0; b < kBatches; ++b) checksum += router.route(j, vendors, kBatch, rng, counters).items[0].size();
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    const double per_second = static_cast<double>(kBatch) * kBatches / elapsed.count();
    std::printf("routing policy bench: 10 vendors, redundancy %d, batches of %zu: %.0f item decisions/s "
                "(target >= 1000000) [checksum %zu]\n",
                redundancy, kBatch, per_second, checksum);
    CHECK(checksum == static_cast<std::size_t>(kBatches * redundancy));
  }
}
