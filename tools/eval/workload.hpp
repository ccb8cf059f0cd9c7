#pragma once
// labelbroker-eval's workload: the "eval" section of a vendor-sim scenario (docs/eval.md), read
// strictly like the rest of the scenario (unknown keys, wrong types and out-of-range values are an
// EvalError naming the JSON path), and the unit prices the broker's adapters would quote.
//
// Pure: no I/O beyond what the caller passes in; safe to use from any thread.
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "routing/router.hpp"
#include "vendors/adapter.hpp"
#include "vendors/sim/scenario.hpp"

namespace labelbroker::eval {

class EvalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One kind of job in the mix: its routing facts, its share of the items and its gold rate.
struct JobClass {
  std::string name;  // "medical/classification/general", for output
  routing::JobFacts job;
  double share = 0;      // of the items, normalised to sum 1 over the mix
  double gold_rate = 0;  // gold units per item of this class
};

// A bound on one policy's metric, checked by --check (see metric names in docs/eval.md).
struct Expectation {
  std::string policy;
  std::string metric;  // e.g. "max_accuracy_gap_to_oracle"
  double bound = 0;
};

struct Workload {
  std::int64_t items = 10000;
  double arrival_per_s = 10;      // items per virtual second
  std::int64_t batch_items = 100; // items routed together
  int labels = 4;                 // label alphabet; a wrong answer is a uniformly random other label
  double window_s = 86400;        // sliding window for share caps (per domain)
  std::vector<JobClass> jobs;
  std::map<std::string, double> joins_s;  // vendor id -> virtual time it becomes available
  std::map<std::string, vendors::Capabilities> capabilities;  // absent: can do everything
  routing::RoutingOptions routing;
  std::vector<Expectation> expect;
};

// The largest redundancy a job may ask for (units keep their vendors in a fixed-size array).
inline constexpr int kMaxRedundancy = 5;

// Reads scenario.eval (a scenario without one gets the defaults and a single general
// classification job). Also checks what the virtual clock cannot honour: absolute outage windows
// and drift "at" times. Throws EvalError ("<source>: $.eval.jobs[0].share: must be ...").
Workload parse_workload(const vendors::sim::Scenario& scenario);

// What the broker's adapter for this vendor quotes for one unit of this task type: Scale prices by
// Scale task type (classification -> categorization, preference -> comparison, rating ->
// textcollection), Surge payment_per_response (one worker per task), Mercor the highest expert
// hourly rate times the median minutes per item / 60.
std::int64_t quote_micros(const vendors::sim::VendorSpec& vendor, vendors::TaskType task_type);

// What a vendor can do when the eval section does not say: every task type and expertise tier,
// any domain.
vendors::Capabilities all_capabilities();

}  // namespace labelbroker::eval
