// Pure dispatch logic: majority vote, retry backoff. (Routing: route_decision_test.cpp.)
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "jobs/aggregate.hpp"
#include "jobs/engine.hpp"

using namespace labelbroker;

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
