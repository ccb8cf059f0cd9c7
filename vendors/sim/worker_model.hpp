#pragma once
// The pure part of the simulation: deterministic random numbers, the true label of an item, what a
// simulated worker answers, and how long work takes. No I/O, no clocks, no locks.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vendors/sim/scenario.hpp"

namespace labelbroker::vendors::sim {

// SplitMix64: tiny, fast and identical on every platform (std:: distributions are not), so a seed
// gives the same simulation everywhere. Not thread safe; one instance per stream.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  // An independent stream for (seed, a, b): e.g. one per task, so answers do not depend on the
  // order in which threads happened to draw.
  static Rng stream(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0);
  std::uint64_t next();
  double uniform();  // [0, 1)
  bool chance(double p) { return p > 0 && uniform() < p; }
  std::size_t below(std::size_t n);  // [0, n); n > 0
  double normal();

 private:
  std::uint64_t state_;
};

// The item's data as hashed: keys starting with '_' (broker routing fields, _truth) removed.
nlohmann::json visible_data(const nlohmann::json& data);

// data._truth when it is a string; otherwise labels[h % labels.size()] where h is the first 64
// bits of sha256(visible_data(data).dump()). Without labels (free text): "text-" + 12 hex digits.
std::string true_label(const nlohmann::json& data, const std::vector<std::string>& labels);

// The worker answers `truth` with probability `accuracy`, else a label drawn uniformly from the
// other labels (or "not-" + truth when there is no other label).
std::string worker_answer(const std::string& truth, const std::vector<std::string>& labels, double accuracy, Rng& rng);

// One draw from the distribution, in milliseconds (>= 0).
double sample_ms(const Distribution& d, Rng& rng);

}  // namespace labelbroker::vendors::sim
