#include "routing/router.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "quality/beta_posterior.hpp"

namespace labelbroker::routing {

const char* to_string(Removal removal) {
  switch (removal) {
    case Removal::none: return "none";
    case Removal::capability: return "capability";
    case Removal::job_allow_list: return "job_allow_list";
    case Removal::job_deny_list: return "job_deny_list";
    case Removal::team_deny_list: return "team_deny_list";
    case Removal::disabled: return "disabled";
    case Removal::drained: return "drained";
    case Removal::breaker_open: return "breaker_open";
    case Removal::at_capacity: return "at_capacity";
    case Removal::late_for_deadline: return "late_for_deadline";
    case Removal::vendor_spend_cap: return "vendor_spend_cap";
    case Removal::team_spend_cap: return "team_spend_cap";
    case Removal::below_quality_floor: return "below_quality_floor";
    case Removal::over_share_cap: return "over_share_cap";
  }
  return "none";
}

void DiscountedEvidence::observe(double correct_now, double n_now, double discount) {
  if (!(n_now > 0)) return;
  // As if the batch's observations came one after another, each discounting those before it:
  // its total weight is 1 + d + ... + d^(n-1), shared in proportion to its right and wrong ones.
  const double keep = std::pow(discount, n_now);
  const double weight = discount < 1 ? (1 - keep) / (1 - discount) : n_now;
  correct = correct * keep + weight * (correct_now / n_now);
  n = n * keep + weight;
  correct = std::min(correct, n);  // rounding must never make correct > n
}

double RoutingOptions::max_share_for(const std::string& domain, std::optional<double> team_cap) const {
  double cap = max_share;
  if (auto it = domain_max_share.find(domain); it != domain_max_share.end()) cap = std::min(cap, it->second);
  if (team_cap) cap = std::min(cap, *team_cap);
  return cap;
}

Evidence effective_evidence(const VendorFacts& vendor, const RoutingOptions& options) {
  double fade = 1;
  if (vendor.evidence_age_hours > 0 && options.evidence_half_life_hours > 0)
    fade = std::exp2(-vendor.evidence_age_hours / options.evidence_half_life_hours);
  return {vendor.gold_correct * fade, vendor.gold_n * fade};
}

std::string counter_scope(const JobFacts& job) {
  return job.domain + "/" + std::string(vendors::to_string(job.task_type));
}

namespace {

bool contains(const std::vector<std::string>& list, const std::string& id) {
  return std::find(list.begin(), list.end(), id) != list.end();
}

std::string fixed(double x, int digits = 2) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

}  // namespace

Router::Router(RoutingOptions options) : options_(std::move(options)) {
  if (!(options_.max_share > 0 && options_.max_share <= 1))
    throw std::invalid_argument("routing: max_share must be in (0, 1]");
  if (!(options_.min_share >= 0 && options_.min_share <= options_.max_share))
    throw std::invalid_argument("routing: min_share must be in [0, max_share]");
  if (!(options_.evidence_discount > 0 && options_.evidence_discount <= 1))
    throw std::invalid_argument("routing: evidence_discount must be in (0, 1]");
}

std::vector<Verdict> Router::filter(const JobFacts& job, const std::vector<VendorFacts>& vendors) const {
  std::vector<Verdict> verdicts(vendors.size());
  // Everything but the share cap, which depends on which other vendors survive.
  for (std::size_t i = 0; i < vendors.size(); ++i) {
    const auto& v = vendors[i];
    auto& out = verdicts[i];
    auto remove = [&](Removal r, std::string detail) {
      out.removal = r;
      out.detail = std::move(detail);
    };
    if (!v.capabilities.supports(job.task_type, job.domain, job.expertise))
      remove(Removal::capability, "does not offer " + std::string(vendors::to_string(job.task_type)) + " / " +
                                      job.domain + " / " + std::string(vendors::to_string(job.expertise)));
    else if (!job.allow.empty() && !contains(job.allow, v.id))
      remove(Removal::job_allow_list, "not in the job's allow list");
    else if (contains(job.deny, v.id))
      remove(Removal::job_deny_list, "denied by the job");
    else if (contains(job.team_deny, v.id))
      remove(Removal::team_deny_list, "denied by the team");
    else if (!v.enabled)
      remove(Removal::disabled, "disabled by an admin");
    else if (!(v.weight > 0))
      remove(Removal::drained, "weight 0: draining");
    else if (!v.breaker_allows)
      remove(Removal::breaker_open, std::string("circuit breaker ") + to_string(v.breaker));
    else if (v.max_in_flight > 0 && v.in_flight >= v.max_in_flight)
      remove(Removal::at_capacity, std::to_string(v.in_flight) + " of " + std::to_string(v.max_in_flight) +
                                       " units in flight");
    else if (v.median_latency_s && job.seconds_to_deadline && *v.median_latency_s > *job.seconds_to_deadline)
      remove(Removal::late_for_deadline, "median answer in " + fixed(*v.median_latency_s, 0) + " s, " +
                                             fixed(std::max(*job.seconds_to_deadline, 0.0), 0) + " s left");
    else if (v.monthly_cap_micros && v.monthly_spend_micros + v.cost_micros > *v.monthly_cap_micros)
      remove(Removal::vendor_spend_cap, "monthly spend " + std::to_string(v.monthly_spend_micros) + " of cap " +
                                            std::to_string(*v.monthly_cap_micros) + " micro-USD");
    else if (job.team_monthly_cap_micros && job.team_monthly_spend_micros + v.cost_micros > *job.team_monthly_cap_micros)
      remove(Removal::team_spend_cap, "team monthly spend " + std::to_string(job.team_monthly_spend_micros) +
                                          " of cap " + std::to_string(*job.team_monthly_cap_micros) + " micro-USD");
    else if (job.min_vendor_accuracy) {
      // The upper end of the credible interval: a vendor with little gold has a wide interval and
      // stays until the evidence says it is below the floor.
      const auto e = effective_evidence(v, options_);
      const double a = options_.prior.alpha + e.correct;
      const double b = options_.prior.beta + (e.n - e.correct);
      const double upper = quality::beta_quantile(a, b, (1 + options_.credible) / 2);
      if (e.n >= options_.floor_min_evidence && upper < *job.min_vendor_accuracy)
        remove(Removal::below_quality_floor,
               "upper " + fixed(upper) + " < floor " + fixed(*job.min_vendor_accuracy) + " (gold " +
                   fixed(e.correct, 1) + "/" + fixed(e.n, 1) + ")");
    }
  }

  // Share cap: a vendor at or above the cap in the window takes no more while another can.
  std::int64_t window_total = 0;
  for (const auto& v : vendors) window_total += v.window_judgments;
  if (window_total >= options_.share_cap_min_window) {
    const double cap = options_.max_share_for(job.domain, job.team_max_share);
    std::size_t eligible = 0;
    for (const auto& verdict : verdicts) eligible += verdict.removal == Removal::none;
    std::vector<std::size_t> over;
    for (std::size_t i = 0; i < vendors.size(); ++i) {
      if (verdicts[i].removal != Removal::none) continue;
      const double share = static_cast<double>(vendors[i].window_judgments) / static_cast<double>(window_total);
      if (share >= cap) over.push_back(i);
    }
    // Only while someone else stays eligible: with one vendor left the cap cannot hold.
    if (!over.empty() && over.size() < eligible)
      for (std::size_t i : over)
        verdicts[i] = {Removal::over_share_cap,
                       "window share " +
                           fixed(static_cast<double>(vendors[i].window_judgments) / static_cast<double>(window_total), 3) +
                           " >= cap " + fixed(cap, 3)};
  }
  return verdicts;
}

namespace {

std::vector<VendorInput> allocation_inputs(const std::vector<VendorFacts>& vendors, const std::vector<Verdict>& verdicts,
                                          const RoutingOptions& options) {
  std::vector<VendorInput> inputs(vendors.size());
  for (std::size_t i = 0; i < vendors.size(); ++i) {
    const auto& v = vendors[i];
    auto& in = inputs[i];
    in.id = v.id;
    const auto e = effective_evidence(v, options);
    in.gold_correct = e.correct;
    in.gold_n = e.n;
    in.cost_micros = v.cost_micros;
    in.weight = v.weight > 0 ? v.weight : 1.0;
    in.window_items = v.window_judgments;
    in.eligible = verdicts[i].removal == Removal::none;
    if (!in.eligible) in.removal_reason = std::string(to_string(verdicts[i].removal)) + ": " + verdicts[i].detail;
  }
  return inputs;
}

AllocationOptions allocation_options(const RoutingOptions& o, const JobFacts& job) {
  AllocationOptions a;
  a.optimize = job.optimize;
  a.prior = o.prior;
  a.temperature = o.temperature;
  a.min_share = o.min_share;
  a.max_share = o.max_share_for(job.domain, job.team_max_share);
  return a;
}

}  // namespace

RouteResult Router::route(const JobFacts& job, const std::vector<VendorFacts>& vendors, std::size_t items,
                          std::mt19937_64& rng, CounterBook& counters) const {
  RouteResult result;
  result.verdicts = filter(job, vendors);
  const auto inputs = allocation_inputs(vendors, result.verdicts, options_);
  result.decision = decide_shares(inputs, allocation_options(options_, job), rng);

  std::vector<double> shares, restored;
  shares.reserve(vendors.size());
  restored.reserve(vendors.size());
  for (std::size_t i = 0; i < vendors.size(); ++i) {
    shares.push_back(result.decision.vendors[i].target_share);
    auto it = counters.find(vendors[i].id);
    restored.push_back(it == counters.end() ? 0.0 : it->second);
  }
  DeficitAllocator allocator(std::move(restored));
  const auto picks = allocator.assign(items, std::max(job.redundancy, 0), shares);
  for (std::size_t i = 0; i < vendors.size(); ++i) counters[vendors[i].id] = allocator.counters()[i];

  result.items.reserve(items);
  for (const auto& item : picks) {
    std::vector<std::string> ids;
    ids.reserve(item.size());
    for (int index : item) {
      ids.push_back(vendors[static_cast<std::size_t>(index)].id);
      ++result.decision.vendors[static_cast<std::size_t>(index)].chosen_count;
    }
    result.items.push_back(std::move(ids));
  }
  return result;
}

std::optional<std::string> Router::reroute(const JobFacts& job, const std::vector<VendorFacts>& vendors,
                                           const std::vector<std::string>& used, std::mt19937_64& rng,
                                           CounterBook& counters, std::vector<Verdict>* filtered) const {
  auto verdicts = filter(job, vendors);
  if (filtered) *filtered = verdicts;
  bool any = false;
  for (std::size_t i = 0; i < vendors.size(); ++i) {
    if (verdicts[i].removal == Removal::none && contains(used, vendors[i].id))
      verdicts[i] = {Removal::capability, "already judged this item"};  // only for the shares below
    any = any || verdicts[i].removal == Removal::none;
  }
  if (!any) {
    // Over the share cap is no reason to leave an item without a vendor.
    for (std::size_t i = 0; i < vendors.size(); ++i)
      if (verdicts[i].removal == Removal::over_share_cap && !contains(used, vendors[i].id)) {
        verdicts[i] = {};
        any = true;
      }
    if (!any) return std::nullopt;
  }
  const auto decision = decide_shares(allocation_inputs(vendors, verdicts, options_), allocation_options(options_, job), rng);
  std::vector<double> shares, restored;
  for (std::size_t i = 0; i < vendors.size(); ++i) {
    shares.push_back(decision.vendors[i].target_share);
    auto it = counters.find(vendors[i].id);
    restored.push_back(it == counters.end() ? 0.0 : it->second);
  }
  DeficitAllocator allocator(std::move(restored));
  const auto picks = allocator.assign(1, 1, shares);
  for (std::size_t i = 0; i < vendors.size(); ++i) counters[vendors[i].id] = allocator.counters()[i];
  if (picks.empty() || picks.front().empty()) return std::nullopt;
  return vendors[static_cast<std::size_t>(picks.front().front())].id;
}

}  // namespace labelbroker::routing
