// The pure simulation model: deterministic random streams, truth, answers, latency.
#include "vendors/sim/worker_model.hpp"

#include <catch2/catch.hpp>

#include "common/crypto.hpp"

using namespace labelbroker::vendors::sim;
using nlohmann::json;

TEST_CASE("model: random streams are deterministic and independent", "[sim][model]") {
  Rng a = Rng::stream(42, 1, 0), b = Rng::stream(42, 1, 0), c = Rng::stream(42, 2, 0);
  const auto x = a.next();
  CHECK(x == b.next());
  CHECK(x != c.next());
  Rng r(5);
  for (int i = 0; i < 1000; ++i) {
    const double u = r.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
  }
}

TEST_CASE("model: hashed truth is sha256 of the visible data modulo the labels", "[sim][model]") {
  const std::vector<std::string> labels = {"x", "y", "z"};
  const json data = {{"text", "hello"}, {"n", 3}};
  const std::string digest = labelbroker::common::sha256_hex(R"({"n":3,"text":"hello"})");
  CHECK(true_label(data, labels) == labels[std::stoull(digest.substr(0, 16), nullptr, 16) % 3]);
  CHECK(true_label(data, {}) == "text-" + digest.substr(0, 12));
  CHECK(true_label({{"text", "hello"}, {"_truth", 5}}, labels) == true_label({{"text", "hello"}}, labels));
}

TEST_CASE("model: a worker answers the truth with the given accuracy, else another label", "[sim][model]") {
  const std::vector<std::string> labels = {"a", "b", "c"};
  int correct = 0;
  std::map<std::string, int> wrong;
  for (std::uint64_t i = 0; i < 10000; ++i) {
    Rng rng = Rng::stream(99, i, 0);
    const std::string answer = worker_answer("a", labels, 0.8, rng);
    if (answer == "a")
      ++correct;
    else
      ++wrong[answer];
  }
  CHECK(correct == 7990);  // exact for seed 99; Binomial(10000, 0.8) has sd 40
  CHECK(wrong.size() == 2);
  CHECK(wrong["b"] + wrong["c"] == 10000 - correct);
  Rng one(1);
  CHECK(worker_answer("a", {"a"}, 0.0, one) == "not-a");
  Rng always(1);
  CHECK(worker_answer("b", labels, 1.0, always) == "b");
}

TEST_CASE("model: latency draws", "[sim][model]") {
  Rng rng(3);
  CHECK(sample_ms(Distribution{false, 250, 0, 0}, rng) == 250);
  Distribution d{true, 0, 100, 400};
  std::vector<double> draws;
  for (int i = 0; i < 2001; ++i) draws.push_back(sample_ms(d, rng));
  std::sort(draws.begin(), draws.end());
  CHECK(draws[1000] == Approx(100).epsilon(0.15));  // median
  CHECK(draws[1900] == Approx(400).epsilon(0.2));   // 95th percentile
}
