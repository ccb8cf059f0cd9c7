// labelbroker-eval: offline evaluation of the routing policy against simulated vendors (#6).
// Wiring only: the simulation, policies and report live in lb_eval.
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "tools/eval/policies.hpp"
#include "tools/eval/report.hpp"
#include "tools/eval/simulation.hpp"
#include "tools/eval/workload.hpp"
#include "vendors/sim/scenario.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;  // scenario or runtime error
constexpr int kExitUsage = 2;
constexpr int kExitCheckFailed = 3;

constexpr const char* kUsage = R"(usage: labelbroker-eval --scenario FILE [--policy NAME] [--items N] [--seed S] [--json] [--check]

Runs the broker's routing policy (server/routing) in-process against the simulated vendors of a
vendor-sim scenario on a virtual clock, next to the baselines, and prints per policy: label
accuracy against the truth, total cost, cost per correct label, the largest vendor share of a
domain's sliding window (and how often it was above the cap while another vendor was eligible),
HHI over each tenth of the run, how many items it took to move work off a vendor whose quality
dropped, re-routes after failed sends and decisions whose cap could not hold. The workload is the
scenario's "eval" section; see docs/eval.md.

Options:
  --scenario FILE  vendor-sim scenario with an "eval" section (config/scenarios/*.json)
  --policy NAME    run only this policy (repeatable): labelbroker, oracle, single-vendor,
                   round-robin, cheapest-first; default all
  --items N        override eval.items
  --seed S         random seed (default: the scenario's seed); same seed, same results
  --json           print one JSON document instead of the table
  --check          check the scenario's eval.expect bounds; exit 3 if one fails
  -h, --help       show this help

Exit codes: 0 ok, 1 scenario or runtime error, 2 usage error, 3 an expectation failed (--check).
)";

struct Args {
  std::string scenario;
  std::vector<std::string> policies;
  std::optional<std::int64_t> items;
  std::optional<std::uint64_t> seed;
  bool json = false;
  bool check = false;
};

struct UsageError {
  std::string message;
};

std::uint64_t parse_number(const std::string& flag, const std::string& text, std::uint64_t min) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 19)
    throw UsageError{flag + " needs a non-negative integer, got \"" + text + "\""};
  const std::uint64_t n = std::stoull(text);
  if (n < min) throw UsageError{flag + " must be at least " + std::to_string(min)};
  return n;
}

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError{a + " needs a value"};
      return argv[++i];
    };
    if (a == "--scenario")
      args.scenario = value();
    else if (a == "--policy") {
      std::string name = value();
      bool known = false;
      for (const auto& p : labelbroker::eval::policy_names()) known = known || p == name;
      if (!known)
        throw UsageError{"unknown policy \"" + name + "\" (labelbroker, oracle, single-vendor, round-robin, cheapest-first)"};
      args.policies.push_back(name);
    } else if (a == "--items")
      args.items = static_cast<std::int64_t>(parse_number(a, value(), 1));
    else if (a == "--seed")
      args.seed = parse_number(a, value(), 0);
    else if (a == "--json")
      args.json = true;
    else if (a == "--check")
      args.check = true;
    else
      throw UsageError{"unknown argument \"" + a + "\""};
  }
  if (args.scenario.empty()) throw UsageError{"--scenario FILE is required"};
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace labelbroker;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return kExitOk;
    }
  }
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "labelbroker-eval: " << e.message << "\n" << kUsage;
    return kExitUsage;
  }
  try {
    const auto scenario = vendors::sim::load_scenario(args.scenario);
    auto workload = eval::parse_workload(scenario);
    if (args.items) workload.items = *args.items;
    const std::uint64_t seed = args.seed.value_or(scenario.seed);

    std::vector<std::string> run = args.policies.empty() ? eval::policy_names() : args.policies;
    if (args.check) {
      bool oracle = false;
      for (const auto& p : run) oracle = oracle || p == "oracle";
      for (const auto& p : std::vector<std::string>(run))
        if (!oracle && eval::needs_oracle(workload, p)) {
          run.push_back("oracle");
          oracle = true;
        }
    }
    const auto started = std::chrono::steady_clock::now();
    std::vector<eval::PolicyResult> results;
    for (const auto& p : run) results.push_back(eval::simulate(scenario, workload, p, seed));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    std::optional<std::vector<eval::CheckOutcome>> checks;
    if (args.check) checks = eval::check_expectations(workload, results);
    const auto* check_ptr = checks ? &*checks : nullptr;
    if (args.json)
      std::cout << eval::report_json(args.scenario, workload, seed, results, check_ptr).dump(2) << "\n";
    else
      std::cout << eval::format_report(args.scenario, workload, seed, results, check_ptr);
    std::cout.flush();
    std::fprintf(stderr, "labelbroker-eval: %zu policies x %lld items in %.2f s\n", results.size(),
                 static_cast<long long>(workload.items), seconds);
    if (checks)
      for (const auto& c : *checks)
        if (!c.passed) return kExitCheckFailed;
    return kExitOk;
  } catch (const std::exception& e) {
    std::cerr << "labelbroker-eval: " << e.what() << "\n";
    return kExitError;
  }
}
