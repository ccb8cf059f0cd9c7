#pragma once
// labelbroker-eval's output: the per-policy table, the JSON form, and the scenario's expectations
// checked against the results. Pure formatting; no I/O.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/eval/simulation.hpp"
#include "tools/eval/workload.hpp"

namespace labelbroker::eval {

struct CheckOutcome {
  Expectation expectation;
  std::optional<double> value;  // nullopt: not measurable (never reacted, no drift, oracle not run)
  bool skipped = false;         // the policy was not run
  bool passed = false;
};

// Every expectation of the workload, in order. A metric relative to the oracle without an oracle
// result fails (the caller runs the oracle when an expectation needs it).
std::vector<CheckOutcome> check_expectations(const Workload& workload, const std::vector<PolicyResult>& results);

// Whether any expectation of `policy` compares with the oracle.
bool needs_oracle(const Workload& workload, const std::string& policy);

// The aligned table, the HHI series and accuracy by domain, then the checks (if any).
std::string format_report(const std::string& scenario_name, const Workload& workload, std::uint64_t seed,
                          const std::vector<PolicyResult>& results, const std::vector<CheckOutcome>* checks);

nlohmann::json report_json(const std::string& scenario_name, const Workload& workload, std::uint64_t seed,
                           const std::vector<PolicyResult>& results, const std::vector<CheckOutcome>* checks);

}  // namespace labelbroker::eval
