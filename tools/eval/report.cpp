#include "tools/eval/report.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace labelbroker::eval {
namespace {

const PolicyResult* find(const std::vector<PolicyResult>& results, const std::string& policy) {
  for (const auto& r : results)
    if (r.policy == policy) return &r;
  return nullptr;
}

std::string fmt(const char* format, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, x);
  return buf;
}

std::string react_text(const PolicyResult& r) {
  if (!r.has_drift) return "n/a";
  if (!r.react_items) return "never";
  return std::to_string(*r.react_items) + " (" + std::to_string(*r.react_items_total) + ")";
}

std::optional<double> metric_value(const Expectation& e, const PolicyResult& r, const PolicyResult* oracle) {
  const std::string& m = e.metric;
  if (m == "min_accuracy" || m == "max_accuracy") return r.accuracy;
  if (m == "max_accuracy_gap_to_oracle" || m == "min_accuracy_gap_to_oracle") {
    if (!oracle) return std::nullopt;
    return oracle->accuracy - r.accuracy;
  }
  if (m == "max_cost_ratio_to_oracle") {
    if (!oracle || oracle->cost_micros == 0) return std::nullopt;
    return static_cast<double>(r.cost_micros) / static_cast<double>(oracle->cost_micros);
  }
  if (m == "max_cap_violations") return static_cast<double>(r.cap_violations);
  if (m == "max_react_items") {
    if (!r.react_items) return std::nullopt;
    return static_cast<double>(*r.react_items);
  }
  if (m == "max_share") return r.max_share;
  if (m == "max_lost") return static_cast<double>(r.lost);
  return std::nullopt;
}

std::string value_text(const std::optional<double>& v) {
  if (!v) return "not measurable";
  return fmt("%.4g", *v);
}

}  // namespace

bool needs_oracle(const Workload& workload, const std::string& policy) {
  for (const auto& e : workload.expect)
    if (e.policy == policy && e.metric.find("oracle") != std::string::npos) return true;
  return false;
}

std::vector<CheckOutcome> check_expectations(const Workload& workload, const std::vector<PolicyResult>& results) {
  std::vector<CheckOutcome> out;
  const PolicyResult* oracle = find(results, "oracle");
  for (const auto& e : workload.expect) {
    CheckOutcome o;
    o.expectation = e;
    const PolicyResult* r = find(results, e.policy);
    if (!r) {
      o.skipped = true;
      o.passed = true;
      out.push_back(o);
      continue;
    }
    o.value = metric_value(e, *r, oracle);
    const bool is_min = e.metric.rfind("min_", 0) == 0;
    o.passed = o.value && (is_min ? *o.value >= e.bound : *o.value <= e.bound);
    out.push_back(o);
  }
  return out;
}

std::string format_report(const std::string& scenario_name, const Workload& workload, std::uint64_t seed,
                          const std::vector<PolicyResult>& results, const std::vector<CheckOutcome>* checks) {
  std::ostringstream out;
  out << "scenario " << scenario_name << ": " << workload.items << " items at " << fmt("%g", workload.arrival_per_s)
      << "/s in batches of " << workload.batch_items << ", seed " << seed << "\n";
  if (!results.empty() && results.front().has_drift)
    out << "quality drop watched: " << results.front().drift_vendor << " on " << results.front().drift_scope
        << " (react = items of that scope until its share of the last 100 judgments < 10%; all items in brackets)\n";
  out << "\n";

  const std::vector<std::string> head = {"policy",    "accuracy", "cost USD", "USD/correct", "max share",
                                         "cap viol.", "react",    "failed",   "reroutes",    "cap unsat.", "lost"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : results)
    rows.push_back({r.policy, fmt("%.4f", r.accuracy), fmt("%.2f", static_cast<double>(r.cost_micros) / 1e6),
                    fmt("%.4f", r.cost_per_correct_usd), r.share_checks ? fmt("%.3f", r.max_share) : "-",
                    std::to_string(r.cap_violations), react_text(r), std::to_string(r.failed_sends), std::to_string(r.reroutes),
                    std::to_string(r.cap_unsatisfiable), std::to_string(r.lost)});
  std::vector<std::size_t> width(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) {
    width[i] = head[i].size();
    for (const auto& row : rows) width[i] = std::max(width[i], row[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (i == 0)
        out << cells[i] << std::string(width[i] - cells[i].size(), ' ');
      else
        out << "  " << std::string(width[i] - cells[i].size(), ' ') << cells[i];
    }
    out << "\n";
  };
  line(head);
  for (const auto& row : rows) line(row);

  std::size_t name_width = 6;
  for (const auto& r : results) name_width = std::max(name_width, r.policy.size());
  out << "\nHHI of each tenth of the run (0-10000; 10000 = one vendor):\n";
  for (const auto& r : results) {
    out << r.policy << std::string(name_width - r.policy.size(), ' ');
    for (double h : r.hhi_tenths) out << " " << fmt("%5.0f", h);
    out << "\n";
  }
  out << "\naccuracy by domain:\n";
  for (const auto& r : results) {
    out << r.policy << std::string(name_width - r.policy.size(), ' ');
    for (const auto& d : r.domains)
      out << "  " << d.domain << " "
          << (d.items ? fmt("%.4f", static_cast<double>(d.correct) / static_cast<double>(d.items)) : "-");
    out << "\n";
  }
  out << "\njudgments by vendor:\n";
  for (const auto& r : results) {
    out << r.policy << std::string(name_width - r.policy.size(), ' ');
    for (const auto& v : r.vendors) out << "  " << v.id << " " << v.judgments;
    out << "\n";
  }
  if (checks) {
    out << "\nchecks:\n";
    for (const auto& c : *checks) {
      const auto& e = c.expectation;
      const bool is_min = e.metric.rfind("min_", 0) == 0;
      out << (c.skipped ? "SKIP " : c.passed ? "PASS " : "FAIL ") << e.policy << " " << e.metric << " "
          << (is_min ? ">= " : "<= ") << fmt("%g", e.bound);
      if (!c.skipped) out << ": " << value_text(c.value);
      out << "\n";
    }
  }
  return out.str();
}

nlohmann::json report_json(const std::string& scenario_name, const Workload& workload, std::uint64_t seed,
                           const std::vector<PolicyResult>& results, const std::vector<CheckOutcome>* checks) {
  using nlohmann::json;
  json policies = json::array();
  for (const auto& r : results) {
    json vendors = json::array();
    for (const auto& v : r.vendors)
      vendors.push_back({{"id", v.id},
                         {"judgments", v.judgments},
                         {"cost_usd", static_cast<double>(v.cost_micros) / 1e6},
                         {"failed_sends", v.failed_sends}});
    json domains = json::array();
    for (const auto& d : r.domains)
      domains.push_back({{"domain", d.domain},
                         {"items", d.items},
                         {"accuracy", d.items ? static_cast<double>(d.correct) / static_cast<double>(d.items) : 0.0}});
    json p = {{"policy", r.policy},
              {"items", r.items},
              {"correct", r.correct},
              {"accuracy", r.accuracy},
              {"cost_usd", static_cast<double>(r.cost_micros) / 1e6},
              {"cost_per_correct_usd", r.cost_per_correct_usd},
              {"judgments", r.judgments},
              {"gold_judgments", r.gold_judgments},
              {"max_share", r.max_share},
              {"share_checks", r.share_checks},
              {"cap_violations", r.cap_violations},
              {"hhi_tenths", r.hhi_tenths},
              {"react_items", r.react_items ? json(*r.react_items) : json(nullptr)},
              {"react_items_total", r.react_items_total ? json(*r.react_items_total) : json(nullptr)},
              {"reroutes", r.reroutes},
              {"failed_sends", r.failed_sends},
              {"cap_unsatisfiable", r.cap_unsatisfiable},
              {"lost", r.lost},
              {"virtual_seconds", r.virtual_seconds},
              {"vendors", vendors},
              {"domains", domains}};
    if (r.has_drift) p["drift"] = {{"vendor", r.drift_vendor}, {"scope", r.drift_scope}};
    policies.push_back(std::move(p));
  }
  json out = {{"scenario", scenario_name}, {"items", workload.items}, {"seed", seed}, {"policies", policies}};
  if (checks) {
    json list = json::array();
    bool all = true;
    for (const auto& c : *checks) {
      all = all && c.passed;
      list.push_back({{"policy", c.expectation.policy},
                      {"metric", c.expectation.metric},
                      {"bound", c.expectation.bound},
                      {"value", c.value ? json(*c.value) : json(nullptr)},
                      {"result", c.skipped ? "skip" : c.passed ? "pass" : "fail"}});
    }
    out["checks"] = list;
    out["passed"] = all;
  }
  return out;
}

}  // namespace labelbroker::eval
