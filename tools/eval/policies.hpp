#pragma once
// The routing policies labelbroker-eval compares. Each sees, per decision, the facts the broker
// would gather (routing::VendorFacts, one per scenario vendor in scenario order) and answers with
// vendor indices into that list.
//
//   labelbroker     routing::Router with the scenario's RoutingOptions, evidence from gold
//   oracle          the same Router, but the simulation fills the evidence with the vendors' true
//                   current accuracies (uses_truth), so it obeys the same caps and floors
//   single-vendor   everything to the biggest vendor (largest max_in_flight) that can take it
//   round-robin     the capable vendors in turn
//   cheapest-first  the capable vendor with the lowest quote
// Baselines respect capability, join time and the circuit breaker (they retry elsewhere when a
// send fails) but not share caps, capacity or quality floors.
//
// A policy instance belongs to one simulation run (it keeps deficit counters / turn pointers);
// not thread-safe.
#include <cstddef>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "routing/router.hpp"
#include "tools/eval/workload.hpp"

namespace labelbroker::eval {

// One decision: `stride` slots per unit, vendor indices or -1.
struct Picks {
  int stride = 1;
  std::vector<int> vendor;
  int eligible = 0;                 // vendors the policy considered eligible (share-capped ones count)
  bool cap_unsatisfiable = false;   // the Router raised the cap (one vendor eligible)
};

class Policy {
 public:
  virtual ~Policy() = default;
  // True for the oracle: the caller puts true accuracies in the facts' gold evidence.
  virtual bool uses_truth() const { return false; }
  // Vendors for `units` units of job class `job_class` (distinct per unit, up to the redundancy).
  virtual void assign(std::size_t job_class, const routing::JobFacts& job, const std::vector<routing::VendorFacts>& facts,
                      std::size_t units, std::mt19937_64& rng, Picks& out) = 0;
  // One replacement vendor for a unit whose send failed, not in `used`; -1 when none can take it.
  virtual int reassign(std::size_t job_class, const routing::JobFacts& job, const std::vector<routing::VendorFacts>& facts,
                       const std::vector<int>& used, std::mt19937_64& rng) = 0;
};

// The names, in the order the report lists them.
const std::vector<std::string>& policy_names();

// Throws EvalError for an unknown name.
std::unique_ptr<Policy> make_policy(const std::string& name, const Workload& workload);

}  // namespace labelbroker::eval
