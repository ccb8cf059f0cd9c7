#include "routing/policy.hpp"

#include <algorithm>

namespace labelbroker::routing {

std::vector<const VendorState*> usable_vendors(const RoutingContext& job, const std::vector<VendorState>& vendors) {
  std::vector<const VendorState*> usable;
  for (const auto& id : job.eligible) {
    auto it = std::find_if(vendors.begin(), vendors.end(), [&](const VendorState& v) { return v.id == id; });
    if (it == vendors.end() || !it->enabled || !it->healthy || it->weight <= 0) continue;
    if (!it->capabilities.supports(job.task_type, job.domain, job.expertise)) continue;
    usable.push_back(&*it);
  }
  return usable;
}

namespace {

// Each vendor's expected judgments per item: proportional to its weight, but at most one (an item
// never goes twice to one vendor), the excess spread over the others by weight ("water-filling").
// The shares add up to min(count, number of vendors).
std::vector<double> per_item_shares(const std::vector<const VendorState*>& usable, std::size_t count) {
  std::vector<double> share(usable.size(), 0.0);
  std::vector<bool> capped(usable.size(), false);
  double remaining = static_cast<double>(std::min(count, usable.size()));
  while (true) {
    double weight = 0;
    for (std::size_t i = 0; i < usable.size(); ++i)
      if (!capped[i]) weight += usable[i]->weight;
    bool capped_more = false;
    for (std::size_t i = 0; i < usable.size(); ++i) {
      if (capped[i]) continue;
      share[i] = weight > 0 ? remaining * usable[i]->weight / weight : 0;
      if (share[i] > 1.0) {
        share[i] = 1.0;
        capped[i] = true;
        remaining -= 1.0;
        capped_more = true;
      }
    }
    if (!capped_more) return share;
  }
}

}  // namespace

std::vector<std::string> WeightedRoundRobin::pick(std::map<std::string, double>& credit,
                                                  const std::vector<const VendorState*>& usable, std::size_t count,
                                                  const std::vector<std::string>& exclude) {
  // Deficit round-robin: every item credits each vendor its share; the vendors owed the most (and
  // not excluded) take the item, and pay one credit each. Realised counts stay within one of the
  // shares at all times, and the same inputs always give the same choices.
  const auto shares = per_item_shares(usable, count);
  std::vector<const VendorState*> pool;
  for (std::size_t i = 0; i < usable.size(); ++i) {
    credit[usable[i]->id] += shares[i];
    if (std::find(exclude.begin(), exclude.end(), usable[i]->id) == exclude.end()) pool.push_back(usable[i]);
  }
  // Most credit first; ties keep eligibility order.
  std::stable_sort(pool.begin(), pool.end(),
                   [&](const VendorState* a, const VendorState* b) { return credit[a->id] > credit[b->id]; });
  std::vector<std::string> chosen;
  for (const auto* v : pool) {
    if (chosen.size() == count) break;
    credit[v->id] -= 1.0;
    chosen.push_back(v->id);
  }
  return chosen;
}

std::vector<std::vector<std::string>> WeightedRoundRobin::plan(const RoutingContext& job, std::size_t item_count,
                                                               const std::vector<VendorState>& vendors) {
  const auto usable = usable_vendors(job, vendors);
  const auto count = static_cast<std::size_t>(std::max(job.redundancy, 0));
  std::vector<std::vector<std::string>> plan;
  plan.reserve(item_count);
  std::lock_guard lock(mutex_);
  auto& totals = totals_[job.domain + "/" + std::string(vendors::to_string(job.task_type))];
  for (std::size_t i = 0; i < item_count; ++i) plan.push_back(pick(totals, usable, count, {}));
  return plan;
}

std::optional<std::string> WeightedRoundRobin::reroute(const RoutingContext& job, const std::vector<std::string>& used,
                                                       const std::vector<VendorState>& vendors) {
  const auto usable = usable_vendors(job, vendors);
  std::lock_guard lock(mutex_);
  auto& totals = totals_[job.domain + "/" + std::string(vendors::to_string(job.task_type))];
  // Only the one replacement judgment is credited: vendors are credited for this item once.
  auto chosen = pick(totals, usable, 1, used);
  if (chosen.empty()) return std::nullopt;
  return chosen.front();
}

}  // namespace labelbroker::routing
