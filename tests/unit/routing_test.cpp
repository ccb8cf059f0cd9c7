// Pure dispatch logic: the interim routing policy, majority vote, retry backoff.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "jobs/aggregate.hpp"
#include "jobs/engine.hpp"
#include "routing/policy.hpp"

using namespace labelbroker;

namespace {

routing::VendorState vendor(const std::string& id, double weight = 1.0) {
  routing::VendorState v;
  v.id = id;
  v.capabilities.task_types = {vendors::TaskType::classification};
  v.capabilities.expertise = {vendors::Expertise::general};
  v.weight = weight;
  return v;
}

routing::RoutingContext job(std::vector<std::string> eligible, int redundancy) {
  routing::RoutingContext ctx;
  ctx.job_id = "job";
  ctx.domain = "medical";
  ctx.eligible = std::move(eligible);
  ctx.redundancy = redundancy;
  return ctx;
}

}  // namespace

TEST_CASE("routing: round-robin gives each item distinct vendors and shares judgments by weight", "[routing]") {
  routing::WeightedRoundRobin policy;
  std::vector<routing::VendorState> vendors = {vendor("a", 2), vendor("b", 1), vendor("c", 1)};
  auto plan = policy.plan(job({"a", "b", "c"}, 2), 1000, vendors);
  REQUIRE(plan.size() == 1000);
  std::map<std::string, int> judgments;
  for (const auto& item : plan) {
    REQUIRE(item.size() == 2);
    CHECK(item[0] != item[1]);
    for (const auto& v : item) ++judgments[v];
  }
  // Weight 2 against 1 and 1: with two distinct vendors per item, a takes at most one judgment per
  // item, so it gets every item (1000) and b and c split the other half evenly.
  CHECK(judgments["a"] == 1000);
  CHECK(judgments["b"] == 500);
  CHECK(judgments["c"] == 500);

  auto equal = policy.plan(job({"a", "b", "c"}, 1), 300, {vendor("a"), vendor("b"), vendor("c")});
  std::map<std::string, int> singles;
  for (const auto& item : equal) ++singles[item.at(0)];
  CHECK(singles["a"] == 100);
  CHECK(singles["b"] == 100);
  CHECK(singles["c"] == 100);
}

TEST_CASE("routing: only eligible, enabled, healthy, capable vendors with weight get work", "[routing]") {
  routing::WeightedRoundRobin policy;
  auto disabled = vendor("disabled");
  disabled.enabled = false;
  auto sick = vendor("sick");
  sick.healthy = false;
  auto drained = vendor("drained", 0);
  auto incapable = vendor("incapable");
  incapable.capabilities.task_types = {vendors::TaskType::rating};
  std::vector<routing::VendorState> vendors = {vendor("ok"), disabled, sick, drained, incapable, vendor("not-eligible")};
  auto plan = policy.plan(job({"ok", "disabled", "sick", "drained", "incapable", "unknown"}, 3), 10, vendors);
  for (const auto& item : plan) CHECK(item == std::vector<std::string>{"ok"});

  auto none = policy.plan(job({"disabled"}, 1), 2, vendors);
  CHECK(none == std::vector<std::vector<std::string>>{{}, {}});
}

TEST_CASE("routing: reroute picks a vendor the item has not used, or none", "[routing]") {
  routing::WeightedRoundRobin policy;
  std::vector<routing::VendorState> vendors = {vendor("a"), vendor("b"), vendor("c")};
  auto ctx = job({"a", "b", "c"}, 2);
  for (int i = 0; i < 20; ++i) {
    auto next = policy.reroute(ctx, {"a", "b"}, vendors);
    REQUIRE(next);
    CHECK(*next == "c");
  }
  CHECK_FALSE(policy.reroute(ctx, {"a", "b", "c"}, vendors));
}

TEST_CASE("aggregate: majority vote with the job's label order breaking ties", "[aggregate]") {
  const std::vector<std::string> labels = {"urgent", "routine", "not_medical"};
  CHECK_FALSE(jobs::majority_vote(labels, {}));

  auto one = jobs::majority_vote(labels, {"routine"});
  REQUIRE(one);
  CHECK(one->label == "routine");
  CHECK(one->confidence == 1.0);
  CHECK(one->method == "majority");

  auto majority = jobs::majority_vote(labels, {"not_medical", "routine", "not_medical"});
  REQUIRE(majority);
  CHECK(majority->label == "not_medical");
  CHECK(majority->confidence == Approx(2.0 / 3.0));

  // A tie: the label listed first wins, whatever order the judgments came in.
  for (const auto& answers : {std::vector<std::string>{"not_medical", "routine"},
                              std::vector<std::string>{"routine", "not_medical"}}) {
    auto tie = jobs::majority_vote(labels, answers);
    REQUIRE(tie);
    CHECK(tie->label == "routine");
    CHECK(tie->confidence == 0.5);
  }
  // Answers outside the label list rank after every listed label on ties.
  auto odd = jobs::majority_vote(labels, {"zzz", "urgent"});
  REQUIRE(odd);
  CHECK(odd->label == "urgent");
}

TEST_CASE("dispatch: retry backoff is full-jitter exponential, capped, and honours Retry-After", "[dispatch]") {
  std::mt19937_64 rng(7);
  using ms = std::chrono::milliseconds;
  std::set<long> seen;
  for (int i = 0; i < 200; ++i) {
    auto first = jobs::retry_backoff(1, ms(100), ms(5000), std::nullopt, rng);
    CHECK(first >= ms(0));
    CHECK(first <= ms(100));
    auto fifth = jobs::retry_backoff(5, ms(100), ms(5000), std::nullopt, rng);
    CHECK(fifth <= ms(1600));
    auto late = jobs::retry_backoff(40, ms(100), ms(5000), std::nullopt, rng);
    CHECK(late <= ms(5000));
    seen.insert(fifth.count());
    CHECK(jobs::retry_backoff(1, ms(100), ms(5000), ms(3000), rng) == ms(3000));
  }
  CHECK(seen.size() > 50);  // jittered, not a fixed delay
}
