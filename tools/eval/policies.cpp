#include "tools/eval/policies.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <numeric>

namespace labelbroker::eval {
namespace {

using routing::JobFacts;
using routing::Removal;
using routing::VendorFacts;

bool contains(const std::vector<int>& list, int v) { return std::find(list.begin(), list.end(), v) != list.end(); }

int index_of(const std::vector<VendorFacts>& facts, const std::string& id) {
  for (std::size_t i = 0; i < facts.size(); ++i)
    if (facts[i].id == id) return static_cast<int>(i);
  return -1;
}

class RouterPolicy final : public Policy {
 public:
  RouterPolicy(routing::RoutingOptions options, bool oracle) : router_(std::move(options)), oracle_(oracle) {}

  bool uses_truth() const override { return oracle_; }

  void assign(std::size_t, const JobFacts& job, const std::vector<VendorFacts>& facts, std::size_t units,
              std::mt19937_64& rng, Picks& out) override {
    auto& counters = counters_[routing::counter_scope(job)];
    const auto result = router_.route(job, facts, units, rng, counters);
    out.stride = std::max(job.redundancy, 1);
    out.vendor.assign(units * static_cast<std::size_t>(out.stride), -1);
    for (std::size_t u = 0; u < result.items.size() && u < units; ++u) {
      const auto& ids = result.items[u];
      for (std::size_t k = 0; k < ids.size() && k < static_cast<std::size_t>(out.stride); ++k)
        out.vendor[u * static_cast<std::size_t>(out.stride) + k] = index_of(facts, ids[k]);
    }
    out.eligible = 0;
    for (const auto& v : result.verdicts)
      out.eligible += v.removal == Removal::none || v.removal == Removal::over_share_cap;
    out.cap_unsatisfiable = result.decision.cap_unsatisfiable;
  }

  int reassign(std::size_t, const JobFacts& job, const std::vector<VendorFacts>& facts, const std::vector<int>& used,
               std::mt19937_64& rng) override {
    std::vector<std::string> used_ids;
    for (int v : used) used_ids.push_back(facts[static_cast<std::size_t>(v)].id);
    auto& counters = counters_[routing::counter_scope(job)];
    const auto id = router_.reroute(job, facts, used_ids, rng, counters);
    return id ? index_of(facts, *id) : -1;
  }

 private:
  routing::Router router_;
  bool oracle_;
  std::map<std::string, routing::CounterBook> counters_;
};

bool can_take(const JobFacts& job, const VendorFacts& v) {
  return v.enabled && v.breaker_allows && v.capabilities.supports(job.task_type, job.domain, job.expertise);
}

// Baselines that walk the vendors in an order of their own and take the first that can take the unit.
class OrderedPolicy : public Policy {
 public:
  void assign(std::size_t job_class, const JobFacts& job, const std::vector<VendorFacts>& facts, std::size_t units,
              std::mt19937_64&, Picks& out) override {
    const auto order = vendor_order(job_class, job, facts);
    std::vector<int> able;
    for (int v : order)
      if (can_take(job, facts[static_cast<std::size_t>(v)])) able.push_back(v);
    out.stride = std::max(job.redundancy, 1);
    out.vendor.assign(units * static_cast<std::size_t>(out.stride), -1);
    out.eligible = static_cast<int>(able.size());
    out.cap_unsatisfiable = false;
    if (able.empty()) return;
    const std::size_t per_unit =
        one_vendor() ? static_cast<std::size_t>(out.stride)
                     : std::min<std::size_t>(static_cast<std::size_t>(out.stride), able.size());
    for (std::size_t u = 0; u < units; ++u) {
      const std::size_t start = first_for_unit(job_class, able.size(), per_unit);
      for (std::size_t k = 0; k < per_unit; ++k)
        out.vendor[u * static_cast<std::size_t>(out.stride) + k] = able[one_vendor() ? start : (start + k) % able.size()];
    }
  }

  int reassign(std::size_t job_class, const JobFacts& job, const std::vector<VendorFacts>& facts,
               const std::vector<int>& used, std::mt19937_64&) override {
    for (int v : vendor_order(job_class, job, facts))
      if (!contains(used, v) && can_take(job, facts[static_cast<std::size_t>(v)])) return v;
    return -1;
  }

 protected:
  virtual std::vector<int> vendor_order(std::size_t job_class, const JobFacts& job,
                                        const std::vector<VendorFacts>& facts) const = 0;
  // Where in the able list a unit's vendors start (0: always the first in order).
  virtual std::size_t first_for_unit(std::size_t, std::size_t, std::size_t) { return 0; }
  // All of a unit's judgments at one vendor (different workers there), as a buyer with one vendor does.
  virtual bool one_vendor() const { return false; }
};

class SingleVendor final : public OrderedPolicy {
 protected:
  bool one_vendor() const override { return true; }
  std::vector<int> vendor_order(std::size_t, const JobFacts&, const std::vector<VendorFacts>& facts) const override {
    std::vector<int> order(facts.size());
    std::iota(order.begin(), order.end(), 0);
    // max_in_flight 0 means unlimited: the biggest of all.
    auto size = [&](int v) {
      const auto m = facts[static_cast<std::size_t>(v)].max_in_flight;
      return m == 0 ? std::numeric_limits<std::int64_t>::max() : m;
    };
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return size(a) > size(b); });
    return order;
  }
};

class RoundRobin final : public OrderedPolicy {
 protected:
  std::vector<int> vendor_order(std::size_t, const JobFacts&, const std::vector<VendorFacts>& facts) const override {
    std::vector<int> order(facts.size());
    std::iota(order.begin(), order.end(), 0);
    return order;
  }
  std::size_t first_for_unit(std::size_t job_class, std::size_t able, std::size_t per_unit) override {
    if (turn_.size() <= job_class) turn_.resize(job_class + 1, 0);
    const std::size_t start = turn_[job_class] % able;
    turn_[job_class] = start + per_unit;
    return start;
  }

 private:
  std::vector<std::size_t> turn_;
};

class CheapestFirst final : public OrderedPolicy {
 protected:
  std::vector<int> vendor_order(std::size_t, const JobFacts&, const std::vector<VendorFacts>& facts) const override {
    std::vector<int> order(facts.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return facts[static_cast<std::size_t>(a)].cost_micros < facts[static_cast<std::size_t>(b)].cost_micros;
    });
    return order;
  }
};

}  // namespace

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = {"labelbroker", "oracle", "single-vendor", "round-robin",
                                                 "cheapest-first"};
  return names;
}

std::unique_ptr<Policy> make_policy(const std::string& name, const Workload& workload) {
  if (name == "labelbroker") return std::make_unique<RouterPolicy>(workload.routing, false);
  if (name == "oracle") return std::make_unique<RouterPolicy>(workload.routing, true);
  if (name == "single-vendor") return std::make_unique<SingleVendor>();
  if (name == "round-robin") return std::make_unique<RoundRobin>();
  if (name == "cheapest-first") return std::make_unique<CheapestFirst>();
  throw EvalError("unknown policy \"" + name + "\" (labelbroker, oracle, single-vendor, round-robin, cheapest-first)");
}

}  // namespace labelbroker::eval
