#pragma once
// The allocation step of quality- and cost-aware routing (#6): how a batch of items is shared out
// among a job's eligible vendors.
//
//  1. Score. For each eligible vendor draw p ~ Beta(prior.alpha + correct, prior.beta + wrong)
//     from its gold record (Thompson sampling, so vendors with little gold still get explored),
//     and compute its cost per correct label c = cost_per_item / p. Scores lie in [0, 1] in every
//     mode, so one temperature means the same in all of them:
//       quality:  score = p
//       cost:     score = c_min / c  (1 for the vendor cheapest per correct label)
//       balanced: score = (p + c_min / c) / 2, the mean of the two. A plain mean rather than
//                 z-scores: with two or three vendors z-scores turn tiny differences into +-1.
//  2. Target shares = softmax(score / temperature) over eligible vendors, then projected onto the
//     box min_share <= s_i <= max_share, sum s_i = 1. The projection is the information (KL)
//     projection: s_i = clamp(k * x_i, min_share, max_share) with the unique k that makes the
//     shares sum to 1, so vendors inside the box keep their ratios (water-filling). It is exact
//     (solved on the sorted breakpoints, no iteration) and deterministic.
//     Infeasible boxes: n * min_share > 1 gives equal shares (min_share_relaxed); n * max_share < 1
//     (one eligible vendor with a cap below 1, say) raises the cap to 1 / n for this decision, the
//     smallest cap that is feasible, and sets cap_unsatisfiable.
//  3. Counts. DeficitAllocator turns shares into vendors per item by smooth weighted round-robin
//     on per-vendor deficit counters, each item on `redundancy` distinct vendors.
//
// Guarantees: pure (no I/O, no clock); randomness only from the generator passed in, so the same
// seed and inputs give the same decision. Free functions are safe from any number of threads;
// a DeficitAllocator needs one owner at a time (the caller holds its lock). Invalid arguments
// (temperature <= 0, shares outside [0, 1] or NaN, min_share > max_share, negative counts,
// correct > n) throw std::invalid_argument.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "quality/beta_posterior.hpp"

namespace labelbroker::routing {

enum class Optimize { quality, cost, balanced };

const char* to_string(Optimize optimize);
std::optional<Optimize> parse_optimize(std::string_view text);

// What the allocation step knows about one vendor. Eligibility (capabilities, breaker, team
// allow/deny) is decided by the caller; the reason is only carried into the decision log.
struct VendorInput {
  std::string id;
  // Gold evidence: correct answers of n. Fractional when the caller discounts old evidence.
  double gold_correct = 0;
  double gold_n = 0;
  std::int64_t cost_micros = 0;  // price of one item, micro-dollars
  double weight = 1.0;           // > 0 multiplies the softmax weight (an admin's preference)
  bool eligible = true;
  std::string removal_reason;      // why not eligible; empty when eligible
  std::int64_t window_items = 0;   // items it got in the sliding window, for realised shares
};

struct AllocationOptions {
  Optimize optimize = Optimize::balanced;
  quality::BetaPrior prior{};
  double temperature = 0.1;  // > 0; lower concentrates work on the best score
  double min_share = 0.0;
  double max_share = 1.0;
};

// One vendor's line in the decision log. Sampled and derived fields are 0 for ineligible vendors.
struct VendorDecision {
  std::string id;
  bool eligible = false;
  std::string removal_reason;
  double sampled_p = 0;                // Thompson draw of its gold accuracy
  double cost_per_correct_micros = 0;  // cost_micros / sampled_p
  double score = 0;
  double target_share = 0;
  double realised_share_before = 0;    // window_items / total window items over all vendors
  bool capped = false;                 // its softmax share was above the cap and cut to it
  std::int64_t chosen_count = 0;       // judgments it got in this decision (filled by allocate)
};

struct Decision {
  Optimize optimize = Optimize::balanced;
  double temperature = 0;
  double min_share = 0;
  double max_share = 0;            // as configured; see effective_max_share
  double effective_max_share = 0;  // the cap actually applied (raised when cap_unsatisfiable)
  bool cap_unsatisfiable = false;
  bool min_share_relaxed = false;  // n * min_share > 1: equal shares were used
  std::vector<VendorDecision> vendors;  // every candidate, in input order
};

// exp(score / temperature), normalised; stable for any finite scores. Empty in, empty out.
std::vector<double> softmax(const std::vector<double>& scores, double temperature);

struct BoxProjection {
  std::vector<double> shares;
  double effective_max_share = 0;
  bool cap_unsatisfiable = false;
  bool min_share_relaxed = false;
};

// Projects non-negative weights (not necessarily normalised) onto min_share <= s_i <= max_share,
// sum s_i = 1, as described above. All-zero weights count as equal weights. Zero weights stay at
// min_share unless the positive ones cannot take the rest at max_share, in which case the rest is
// split equally among the zero ones.
BoxProjection project_to_box(const std::vector<double>& weights, double min_share, double max_share);

// Steps 1 and 2: scores and target shares for every vendor (0 for ineligible ones).
Decision decide_shares(const std::vector<VendorInput>& vendors, const AllocationOptions& options,
                       std::mt19937_64& rng);

// Smooth weighted round-robin with distinct vendors per item. For each item every vendor with a
// positive share earns r * share credit (r = redundancy, at most the number of such vendors), and
// r distinct vendors get the item and pay 1 each. Shares above 1 / r cannot be met with distinct
// vendors, so they are first projected onto [0, 1 / r]. Which r: Tijdeman's chairman-assignment
// rule -- among vendors whose credit after paying stays >= -D, the earliest "deadline"
// (D - credit) / earned-per-item, ties to the lower index, with D = 1 - 1 / (2m - 2) for m
// candidates. Plain "most credit first" drifts slightly past 1; with this rule, while the shares
// stay the same, each vendor's realised count is within D < 1 of share * judgments (checked over
// random share vectors for m <= 16, r <= 5). A vendor whose share is 0 is never chosen and its
// counter is reset to 0.
//
// Counters are indexed like target_shares and persist across calls; counters()/restore() let the
// caller store them. An allocator with no counters starts from zeros; a share vector of another
// length than the counters throws std::invalid_argument (vendor indices would mean other vendors).
class DeficitAllocator {
 public:
  DeficitAllocator() = default;
  explicit DeficitAllocator(std::vector<double> counters) : counters_(std::move(counters)) {}

  // For each of `items` items, min(redundancy, vendors with a positive share) distinct indices.
  std::vector<std::vector<int>> assign(std::size_t items, int redundancy, const std::vector<double>& target_shares);

  const std::vector<double>& counters() const { return counters_; }
  void restore(std::vector<double> counters) { counters_ = std::move(counters); }

 private:
  std::vector<double> counters_;
  std::vector<int> order_;  // scratch: candidate indices, reused across calls
};

struct Allocation {
  Decision decision;
  std::vector<std::vector<int>> items;  // per item, indices into the vendor input
};

// Steps 1 to 3 for one batch: decide_shares, then assign, with chosen counts filled in.
Allocation allocate(const std::vector<VendorInput>& vendors, std::size_t items, int redundancy,
                    const AllocationOptions& options, std::mt19937_64& rng, DeficitAllocator& allocator);

}  // namespace labelbroker::routing
