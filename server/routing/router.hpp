#pragma once
// The routing policy (#6): which vendors judge a batch of items, and why.
//
// One decision runs three steps over every configured vendor:
//  1. Eligibility filters, in this order; the first that removes a vendor is its reason:
//       capability          it cannot do this task type / domain / expertise
//       job_allow_list      the job lists vendors and this one is not among them
//       job_deny_list       the job denies it
//       team_deny_list      the team denies it permanently (conflict-of-interest rules)
//       disabled            an admin disabled it (config or PATCH /v1/vendors/{id})
//       drained             its weight is 0: no new work
//       breaker_open        its circuit breaker is open (or half-open with the probe taken)
//       at_capacity         its units in flight reached its in-flight limit
//       late_for_deadline   its median time to an answer is longer than the job has left
//       vendor_spend_cap    its spend this month reached its monthly cap
//       team_spend_cap      the team's spend this month reached the team's monthly cap
//       below_quality_floor the upper end of its credible interval is below min_vendor_accuracy
//                           (kept while evidence is thin: the interval is then wide)
//       over_share_cap      its share of the domain's judgments in the sliding window is at or above
//                           max_share while another vendor is eligible
//  2. Allocation over the vendors left (allocation.hpp): Thompson-sampled scores, softmax, projected
//     onto [min_share, max_share].
//  3. Counts: deficit counters per scope (domain / task type) turn shares into distinct vendors per
//     item. The counters are the caller's to persist (a map by vendor id), so restarts and several
//     processes continue the same sequence.
//
// Pure: no I/O, no clock; the caller passes the facts it has gathered and a random generator, so
// the broker and labelbroker-eval run exactly this code. Not thread-safe per CounterBook; a Router
// itself is immutable and may be shared.
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "routing/allocation.hpp"
#include "routing/circuit_breaker.hpp"
#include "vendors/adapter.hpp"

namespace labelbroker::routing {

enum class Removal {
  none,
  capability,
  job_allow_list,
  job_deny_list,
  team_deny_list,
  disabled,
  drained,
  breaker_open,
  at_capacity,
  late_for_deadline,
  vendor_spend_cap,
  team_spend_cap,
  below_quality_floor,
  over_share_cap,
};
const char* to_string(Removal removal);

// What the caller knows about one vendor for one job at decision time.
struct VendorFacts {
  std::string id;
  vendors::Capabilities capabilities;
  bool enabled = true;
  double weight = 1.0;  // relative preference; 0 drains the vendor
  BreakerState breaker = BreakerState::closed;
  bool breaker_allows = true;     // false: open, or half-open with its probe already out
  std::int64_t in_flight = 0;     // units sent and not finished
  std::int64_t max_in_flight = 0; // 0: no limit
  std::int64_t cost_micros = 0;   // this job's price of one unit at this vendor
  std::optional<std::int64_t> monthly_cap_micros;
  std::int64_t monthly_spend_micros = 0;
  // Gold evidence for this job's domain and task type (possibly discounted, hence fractional).
  double gold_correct = 0;
  double gold_n = 0;
  std::optional<double> median_latency_s;  // its recent median time from send to answer; unknown: nullopt
  double evidence_age_hours = 0;      // since its last gold answer in this scope
  std::int64_t window_judgments = 0;  // its judgments in this domain in the sliding window
};

// The part of a job routing looks at.
struct JobFacts {
  std::string job_id;
  std::int64_t team_id = 0;
  vendors::TaskType task_type = vendors::TaskType::classification;
  std::string domain;
  vendors::Expertise expertise = vendors::Expertise::general;
  std::vector<std::string> allow;      // empty: any vendor
  std::vector<std::string> deny;
  std::vector<std::string> team_deny;  // the team's permanent deny list
  std::optional<double> min_vendor_accuracy;
  Optimize optimize = Optimize::balanced;
  int redundancy = 1;
  std::optional<std::int64_t> team_monthly_cap_micros;
  std::int64_t team_monthly_spend_micros = 0;
  std::optional<double> team_max_share;  // the team's own cap on any vendor's share, if it set one
  std::optional<double> seconds_to_deadline;  // time the job has left; nullopt: no deadline check
};

struct RoutingOptions {
  double max_share = 0.5;                          // global cap on a vendor's window share
  std::map<std::string, double> domain_max_share;  // per-domain caps
  double min_share = 0.05;                         // fairness floor: eligible vendors stay measured
  double temperature = 0.1;
  quality::BetaPrior prior{};
  double credible = 0.90;                          // the interval the quality floor is checked against
  std::int64_t share_cap_min_window = 100;         // window judgments before over_share_cap applies
  double evidence_discount = 0.98;                 // DiscountedEvidence's, per gold observation
  // Evidence also fades with time (halves every evidence_half_life_hours without a gold answer):
  // a vendor the floor removed gets no work and so no new gold, and would otherwise stay out for
  // good. Faded evidence widens its interval until it is routed again and measured afresh.
  double evidence_half_life_hours = 6;
  // The floor judges a vendor only on at least this much (effective) gold: one wrong answer of a
  // new vendor is not evidence that it is bad.
  double floor_min_evidence = 10;

  // The tightest cap that applies to this job: the smallest of global, domain and team caps.
  double max_share_for(const std::string& domain, std::optional<double> team_cap = std::nullopt) const;
};

// A vendor's gold evidence as the policy weighs it: faded by its age (see evidence_half_life_hours).
struct Evidence {
  double correct = 0;
  double n = 0;
};
Evidence effective_evidence(const VendorFacts& vendor, const RoutingOptions& options);

// One vendor's removal, with a human detail ("upper 0.71 < floor 0.80").
struct Verdict {
  Removal removal = Removal::none;
  std::string detail;
};

struct RouteResult {
  Decision decision;                          // every vendor, in input order, with its reason
  std::vector<std::vector<std::string>> items;  // per item, distinct vendor ids
  std::vector<Verdict> verdicts;              // per vendor, in input order (removal none: eligible)
};

// Gold evidence that forgets, so a vendor whose quality slips is noticed within a few hundred
// judgments however long its good record: each observation first scales the counts so far by
// `discount` (memory of about 1 / (1 - discount) observations). A batch of n observations counts
// as n observations in a row with its right and wrong ones evenly spread, so batching does not
// change the result much. Both the broker (in its roll-up) and labelbroker-eval use it.
struct DiscountedEvidence {
  double correct = 0;
  double n = 0;
  void observe(double correct_now, double n_now, double discount);
};

// Deficit counters by vendor id for one scope. Vendors absent start at 0.
using CounterBook = std::map<std::string, double>;

// The scope whose counters and window a job shares: "domain/task_type".
std::string counter_scope(const JobFacts& job);

class Router {
 public:
  explicit Router(RoutingOptions options = {});
  const RoutingOptions& options() const { return options_; }

  // Step 1 alone: the verdict for each vendor, in input order.
  std::vector<Verdict> filter(const JobFacts& job, const std::vector<VendorFacts>& vendors) const;

  // Steps 1-3 for `items` items, each on min(redundancy, eligible) distinct vendors. `counters`
  // (the scope's) are read and advanced.
  RouteResult route(const JobFacts& job, const std::vector<VendorFacts>& vendors, std::size_t items,
                    std::mt19937_64& rng, CounterBook& counters) const;

  // One more vendor for an item whose unit failed or was moved, excluding `used` (vendors the
  // item already had). nullopt when no eligible vendor is left. Share caps still shape the choice
  // but never leave an item without a vendor when an eligible one exists. `filtered`, if given,
  // receives step 1's verdicts (for the decision log).
  std::optional<std::string> reroute(const JobFacts& job, const std::vector<VendorFacts>& vendors,
                                     const std::vector<std::string>& used, std::mt19937_64& rng,
                                     CounterBook& counters, std::vector<Verdict>* filtered = nullptr) const;

 private:
  RoutingOptions options_;
};

}  // namespace labelbroker::routing
