#pragma once
// The offline simulation behind labelbroker-eval: one routing policy against the scenario's
// simulated vendors on a virtual clock. No HTTP, no database, no threads, no wall clock.
//
// Model (docs/eval.md): items arrive at arrival_per_s in batches of batch_items; each batch's items
// of one job class, with that class's gold units mixed in at random positions, are one decision.
// A send fails while the vendor is in an outage window (its CircuitBreaker, default options,
// records it) and the unit is re-routed; a judgment comes back after the vendor's median latency
// and is correct with the vendor's true accuracy then (accuracy table plus active drift); a wrong
// answer is a uniformly random other label. Gold answers feed the vendor's DiscountedEvidence for
// the job's domain and task type when they come back. An item's label is the majority of its
// judgments (ties: the first answer). Randomness is a function of (seed, unit, vendor), so every
// policy sees the same items, the same gold and the same answer for the same unit at the same
// vendor.
//
// Deterministic: the same scenario, workload, policy and seed give the same result. Pure apart
// from memory; safe to run several simulations on different threads.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tools/eval/workload.hpp"
#include "vendors/sim/scenario.hpp"

namespace labelbroker::eval {

struct VendorResult {
  std::string id;
  std::int64_t judgments = 0;  // judgments sent (items and gold)
  std::int64_t cost_micros = 0;
  std::int64_t failed_sends = 0;
};

struct DomainResult {
  std::string domain;
  std::int64_t items = 0;
  std::int64_t correct = 0;
};

struct PolicyResult {
  std::string policy;
  std::int64_t items = 0;           // items labeled
  std::int64_t correct = 0;         // labels equal to the truth
  double accuracy = 0;              // correct / items
  std::int64_t cost_micros = 0;     // everything charged, gold included
  double cost_per_correct_usd = 0;  // cost / correct
  std::int64_t judgments = 0;
  std::int64_t gold_judgments = 0;
  // Share caps, checked after every decision in the decision's domain window when the window holds
  // at least share_cap_min_window judgments and >= 2 vendors were eligible.
  double max_share = 0;
  std::int64_t share_checks = 0;
  std::int64_t cap_violations = 0;  // checks where a vendor's share was above its cap
  std::vector<double> hhi_tenths;   // HHI (0..10000) of the judgments in each tenth of the items
  // The first drift rule with a negative delta (if any): items of its scope routed after it
  // triggered until the drifted vendor had < 10% of the scope's last 100 judgments.
  bool has_drift = false;
  std::string drift_vendor, drift_scope;
  std::optional<std::int64_t> react_items;        // of the drifted scope; nullopt: never reacted
  std::optional<std::int64_t> react_items_total;  // all items in that time
  std::int64_t reroutes = 0;           // replacement vendors found for failed sends
  std::int64_t failed_sends = 0;
  std::int64_t cap_unsatisfiable = 0;  // decisions with a raised cap (Router policies)
  std::int64_t lost = 0;               // items never labeled (0 unless no vendor could ever take them)
  double virtual_seconds = 0;
  std::vector<VendorResult> vendors;
  std::vector<DomainResult> domains;
};

// Runs `policy` (a name from policy_names()) over `workload.items` items. Throws EvalError for an
// unknown policy.
PolicyResult simulate(const vendors::sim::Scenario& scenario, const Workload& workload, const std::string& policy,
                      std::uint64_t seed);

}  // namespace labelbroker::eval
