#include "tools/eval/simulation.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>
#include <random>

#include "quality/market.hpp"
#include "routing/circuit_breaker.hpp"
#include "tools/eval/policies.hpp"
#include "vendors/sim/worker_model.hpp"

namespace labelbroker::eval {
namespace {

using routing::JobFacts;
using routing::VendorFacts;
using vendors::sim::DriftRule;
using vendors::sim::Rng;
using vendors::sim::Scenario;
using vendors::sim::VendorSpec;

// Random streams of a unit (Rng::stream's second argument is stream * kStreamStride + vendor).
constexpr std::uint64_t kStreamStride = 1 << 16;
constexpr std::uint64_t kStreamCorrect = 1;
constexpr std::uint64_t kStreamWrongLabel = 2;
constexpr std::uint64_t kMaxVendors = 127;  // Unit keeps vendor indices in int8
// The oracle's evidence: as good as knowing the accuracy (interval width ~0.001).
constexpr double kOracleGold = 1e6;
// Reaction to a quality drop: the drifted vendor's share of the scope's last kReactWindow
// judgments falls below kReactShare.
constexpr std::size_t kReactWindow = 100;
constexpr double kReactShare = 0.10;

routing::CircuitBreaker::TimePoint at(double seconds) {
  return routing::CircuitBreaker::TimePoint{} + std::chrono::nanoseconds(std::llround(seconds * 1e9));
}

double median_seconds(const vendors::sim::Distribution& d) { return (d.lognormal ? d.p50_ms : d.fixed_ms) / 1000.0; }

struct Unit {
  std::uint8_t job_class = 0;
  bool gold = false;
  std::uint8_t truth = 0;
  std::uint8_t assigned = 0;     // vendors that took a judgment of it
  std::uint8_t answered = 0;
  std::uint8_t outstanding = 0;  // judgments planned and not answered (in flight or waiting for a vendor)
  std::array<std::int8_t, kMaxRedundancy> vendor{};
  std::array<std::uint8_t, kMaxRedundancy> answer{};
};

struct InFlight {
  double due = 0;
  std::uint32_t unit = 0;
  std::uint64_t seq = 0;    // the vendor's creation index (drift after_tasks)
  std::uint64_t repeat = 0; // earlier judgments of this unit at this vendor (single-vendor only)
};

struct VendorRun {
  const VendorSpec* spec = nullptr;
  routing::CircuitBreaker breaker;
  double latency_s = 0;
  double join_s = 0;
  std::int64_t in_flight = 0;
  std::uint64_t seq = 0;
  std::deque<InFlight> queue;  // due times ascend: sends happen in time order, latency is fixed
  std::vector<std::pair<double, double>> outages;
  std::vector<std::int64_t> cost;                         // per job class
  std::vector<double> base_accuracy;                      // per job class
  std::vector<std::vector<const DriftRule*>> drift;       // per job class, the rules in scope
  std::vector<routing::DiscountedEvidence> evidence;      // per scope (domain/task type)
  std::vector<double> evidence_at;                        // per scope: virtual time of the last gold answer
  VendorResult result;

  bool in_outage(double t) const {
    for (const auto& [start, end] : outages)
      if (t >= start && t < end) return true;
    return false;
  }
};

struct DomainWindow {
  std::deque<std::pair<double, int>> entries;  // (time, vendor), oldest first
  std::vector<std::int64_t> count;
  std::int64_t total = 0;
};

struct DriftWatch {
  int vendor = -1;
  const DriftRule* rule = nullptr;
  bool triggered = false;
  bool done = false;
  std::int64_t scope_items = 0, all_items = 0;
  std::array<int, kReactWindow> ring{};
  std::size_t filled = 0, pos = 0;
  std::int64_t vendor_in_ring = 0;
};

class Simulation {
 public:
  Simulation(const Scenario& scenario, const Workload& workload, const std::string& policy, std::uint64_t seed)
      : scenario_(scenario), w_(workload), policy_(make_policy(policy, workload)), seed_(seed), rng_(seed),
        workload_rng_(seed ^ 0x6c6162656c62726bULL) {
    result_.policy = policy;
    setup();
  }

  PolicyResult run();

 private:
  void setup();
  void refresh_facts(std::size_t c, double t);
  void refresh_breakers(std::size_t c, double t);
  double accuracy(std::size_t v, std::size_t c, std::uint64_t seq, double t) const;
  void complete_until(double t);
  void finish_judgment(std::uint32_t uid);
  void decide(std::size_t c, const std::vector<std::uint32_t>& units, double t);
  void place(std::uint32_t uid, int first, const std::vector<int>& planned, double t);
  bool try_send(std::uint32_t uid, int v, double t);
  void retry_waiting(double t);
  void check_drift(double t);
  void check_caps(std::size_t c, const Picks& picks);

  const Scenario& scenario_;
  const Workload& w_;
  std::unique_ptr<Policy> policy_;
  std::uint64_t seed_;
  std::mt19937_64 rng_;
  Rng workload_rng_;

  std::vector<VendorRun> vendors_;
  std::vector<std::vector<VendorFacts>> facts_;  // per job class
  std::vector<std::size_t> class_scope_, class_domain_;
  std::vector<std::string> domains_;
  std::vector<DomainWindow> windows_;
  std::vector<Unit> units_;
  std::vector<std::uint32_t> waiting_;  // units with a judgment no vendor could take yet
  std::array<std::vector<std::int64_t>, 10> tenths_;
  std::size_t tenth_ = 0;
  DriftWatch watch_;
  std::vector<std::uint8_t> watch_class_;  // per job class: in the drift rule's scope
  Picks picks_;
  PolicyResult result_;
};

void Simulation::setup() {
  const std::size_t nv = scenario_.vendors.size(), nc = w_.jobs.size();
  std::vector<std::string> scopes;
  for (const auto& jc : w_.jobs) {
    const std::string scope = routing::counter_scope(jc.job);
    auto s = std::find(scopes.begin(), scopes.end(), scope);
    class_scope_.push_back(static_cast<std::size_t>(s - scopes.begin()));
    if (s == scopes.end()) scopes.push_back(scope);
    auto d = std::find(domains_.begin(), domains_.end(), jc.job.domain);
    class_domain_.push_back(static_cast<std::size_t>(d - domains_.begin()));
    if (d == domains_.end()) domains_.push_back(jc.job.domain);
  }
  windows_.resize(domains_.size());
  for (auto& win : windows_) win.count.assign(nv, 0);
  for (auto& tenth : tenths_) tenth.assign(nv, 0);

  vendors_.resize(nv);
  facts_.assign(nc, std::vector<VendorFacts>(nv));
  for (std::size_t v = 0; v < nv; ++v) {
    const VendorSpec& spec = scenario_.vendors[v];
    VendorRun& vr = vendors_[v];
    vr.spec = &spec;
    vr.latency_s = median_seconds(spec.behaviour.latency) + median_seconds(spec.behaviour.queue_delay);
    if (auto it = w_.joins_s.find(spec.id); it != w_.joins_s.end()) vr.join_s = it->second;
    for (const auto& o : spec.behaviour.outages)
      vr.outages.emplace_back(static_cast<double>(o.start_relative->count()), static_cast<double>(o.end_relative->count()));
    vr.evidence.resize(scopes.size());
    vr.evidence_at.assign(scopes.size(), 0.0);
    vr.result.id = spec.id;
    auto caps_it = w_.capabilities.find(spec.id);
    const vendors::Capabilities caps = caps_it == w_.capabilities.end() ? all_capabilities() : caps_it->second;
    for (std::size_t c = 0; c < nc; ++c) {
      const JobFacts& job = w_.jobs[c].job;
      const std::string task_type(vendors::to_string(job.task_type));
      vr.cost.push_back(quote_micros(spec, job.task_type));
      vr.base_accuracy.push_back(
          spec.behaviour.accuracy.lookup(job.domain, task_type, std::string(vendors::to_string(job.expertise))));
      vr.drift.emplace_back();
      for (const auto& rule : spec.behaviour.drift)
        if (rule.applies_to(job.domain, task_type)) vr.drift.back().push_back(&rule);
      VendorFacts& f = facts_[c][v];
      f.id = spec.id;
      f.capabilities = caps;
      f.max_in_flight = spec.behaviour.max_in_flight;
      f.cost_micros = vr.cost.back();
    }
  }

  // The quality drop to watch: the first rule that lowers accuracy.
  for (std::size_t v = 0; v < nv && !watch_.rule; ++v)
    for (const auto& rule : scenario_.vendors[v].behaviour.drift)
      if (rule.accuracy_delta < 0) {
        watch_.vendor = static_cast<int>(v);
        watch_.rule = &rule;
        break;
      }
  watch_class_.assign(nc, 0);
  if (watch_.rule) {
    result_.has_drift = true;
    result_.drift_vendor = scenario_.vendors[static_cast<std::size_t>(watch_.vendor)].id;
    result_.drift_scope = (watch_.rule->domain.empty() ? "*" : watch_.rule->domain) + "/" +
                          (watch_.rule->task_type.empty() ? "*" : watch_.rule->task_type);
    for (std::size_t c = 0; c < nc; ++c)
      watch_class_[c] = watch_.rule->applies_to(w_.jobs[c].job.domain, vendors::to_string(w_.jobs[c].job.task_type));
  }
}

double Simulation::accuracy(std::size_t v, std::size_t c, std::uint64_t seq, double t) const {
  const VendorRun& vr = vendors_[v];
  double a = vr.base_accuracy[c];
  for (const DriftRule* rule : vr.drift[c]) {
    const bool on = (rule->after_tasks && seq >= *rule->after_tasks) ||
                    (rule->after && t >= static_cast<double>(rule->after->count()));
    if (on) a += rule->accuracy_delta;
  }
  return std::clamp(a, 0.0, 1.0);
}

void Simulation::refresh_breakers(std::size_t c, double t) {
  for (std::size_t v = 0; v < vendors_.size(); ++v) {
    VendorFacts& f = facts_[c][v];
    f.breaker = vendors_[v].breaker.state(at(t));
    // Outcomes are recorded as soon as a send returns, so a half-open breaker never has its probe out.
    f.breaker_allows = f.breaker != routing::BreakerState::open;
  }
}

void Simulation::refresh_facts(std::size_t c, double t) {
  DomainWindow& win = windows_[class_domain_[c]];
  while (!win.entries.empty() && win.entries.front().first <= t - w_.window_s) {
    --win.count[static_cast<std::size_t>(win.entries.front().second)];
    --win.total;
    win.entries.pop_front();
  }
  const bool truth = policy_->uses_truth();
  for (std::size_t v = 0; v < vendors_.size(); ++v) {
    VendorRun& vr = vendors_[v];
    VendorFacts& f = facts_[c][v];
    f.enabled = t >= vr.join_s;
    f.in_flight = vr.in_flight;
    f.window_judgments = win.count[v];
    if (truth) {
      f.gold_n = kOracleGold;
      f.gold_correct = kOracleGold * accuracy(v, c, vr.seq, t);
    } else {
      const auto& e = vr.evidence[class_scope_[c]];
      f.gold_n = e.n;
      f.gold_correct = e.correct;
      f.evidence_age_hours = e.n > 0 ? (t - vr.evidence_at[class_scope_[c]]) / 3600.0 : 0;
    }
  }
  refresh_breakers(c, t);
}

bool Simulation::try_send(std::uint32_t uid, int v, double t) {
  VendorRun& vr = vendors_[static_cast<std::size_t>(v)];
  if (!vr.breaker.allow(at(t))) return false;
  if (vr.in_outage(t)) {
    vr.breaker.record_failure(at(t));
    ++vr.result.failed_sends;
    ++result_.failed_sends;
    return false;
  }
  vr.breaker.record_success(at(t));
  Unit& unit = units_[uid];
  const auto repeat = static_cast<std::uint64_t>(
      std::count(unit.vendor.begin(), unit.vendor.begin() + unit.assigned, static_cast<std::int8_t>(v)));
  unit.vendor[unit.assigned++] = static_cast<std::int8_t>(v);
  ++vr.in_flight;
  vr.queue.push_back({t + vr.latency_s, uid, vr.seq++, repeat});
  const std::int64_t cost = vr.cost[unit.job_class];
  vr.result.cost_micros += cost;
  ++vr.result.judgments;
  result_.cost_micros += cost;
  ++result_.judgments;
  if (unit.gold) ++result_.gold_judgments;
  DomainWindow& win = windows_[class_domain_[unit.job_class]];
  win.entries.emplace_back(t, v);
  ++win.count[static_cast<std::size_t>(v)];
  ++win.total;
  ++tenths_[tenth_][static_cast<std::size_t>(v)];
  if (watch_.triggered && !watch_.done && watch_class_[unit.job_class]) {
    if (watch_.filled == kReactWindow) watch_.vendor_in_ring -= watch_.ring[watch_.pos] == watch_.vendor;
    watch_.ring[watch_.pos] = v;
    watch_.vendor_in_ring += v == watch_.vendor;
    watch_.pos = (watch_.pos + 1) % kReactWindow;
    watch_.filled = std::min(kReactWindow, watch_.filled + 1);
  }
  return true;
}

// One judgment of unit `uid`, first at `first`, then wherever the policy re-routes it; `planned`
// are the unit's other vendors (taken or about to be), which a replacement must avoid.
void Simulation::place(std::uint32_t uid, int first, const std::vector<int>& planned, double t) {
  const std::size_t c = units_[uid].job_class;
  std::vector<int> tried = planned;
  int v = first;
  while (v >= 0) {
    if (try_send(uid, v, t)) return;
    if (std::find(tried.begin(), tried.end(), v) == tried.end()) tried.push_back(v);
    refresh_breakers(c, t);
    v = policy_->reassign(c, w_.jobs[c].job, facts_[c], tried, rng_);
    if (v >= 0) ++result_.reroutes;
  }
  waiting_.push_back(uid);
}

void Simulation::decide(std::size_t c, const std::vector<std::uint32_t>& units, double t) {
  refresh_facts(c, t);
  policy_->assign(c, w_.jobs[c].job, facts_[c], units.size(), rng_, picks_);
  if (picks_.cap_unsatisfiable) ++result_.cap_unsatisfiable;
  const std::size_t stride = static_cast<std::size_t>(picks_.stride);
  std::vector<int> planned;
  for (std::size_t i = 0; i < units.size(); ++i) {
    const std::uint32_t uid = units[i];
    planned.clear();
    for (std::size_t k = 0; k < stride; ++k)
      if (int v = picks_.vendor[i * stride + k]; v >= 0) planned.push_back(v);
    if (planned.empty()) {
      // Nobody can take it now: one judgment waits for a vendor.
      units_[uid].outstanding = 1;
      waiting_.push_back(uid);
      continue;
    }
    units_[uid].outstanding = static_cast<std::uint8_t>(planned.size());
    for (int v : planned) place(uid, v, planned, t);
  }
  check_caps(c, picks_);
}

void Simulation::check_caps(std::size_t c, const Picks& picks) {
  const DomainWindow& win = windows_[class_domain_[c]];
  if (picks.eligible < 2 || win.total < w_.routing.share_cap_min_window || win.total == 0) return;
  const double cap = w_.routing.max_share_for(w_.jobs[c].job.domain, w_.jobs[c].job.team_max_share);
  ++result_.share_checks;
  bool over = false;
  for (std::int64_t n : win.count) {
    const double share = static_cast<double>(n) / static_cast<double>(win.total);
    result_.max_share = std::max(result_.max_share, share);
    // Whole judgments: exact counts can overshoot a share by less than one (the deficit
    // allocator's bound), so only more than one judgment above the cap is a violation.
    over = over || static_cast<double>(n) > cap * static_cast<double>(win.total) + 1 + 1e-9;
  }
  result_.cap_violations += over;
}

void Simulation::finish_judgment(std::uint32_t uid) {
  Unit& unit = units_[uid];
  if (--unit.outstanding > 0 || unit.gold) return;
  if (unit.answered == 0) return;  // cannot happen: an item waits until one vendor took it
  std::array<int, 64> votes{};
  int best = 0;
  for (int k = 0; k < unit.answered; ++k) best = std::max(best, ++votes[unit.answer[static_cast<std::size_t>(k)]]);
  std::uint8_t label = unit.answer[0];
  for (int k = 0; k < unit.answered; ++k)
    if (votes[unit.answer[static_cast<std::size_t>(k)]] == best) {
      label = unit.answer[static_cast<std::size_t>(k)];
      break;
    }
  auto& domain = result_.domains[class_domain_[unit.job_class]];
  ++domain.items;
  ++result_.items;
  if (label == unit.truth) {
    ++domain.correct;
    ++result_.correct;
  }
}

void Simulation::complete_until(double t) {
  const double discount = w_.routing.evidence_discount;
  for (std::size_t v = 0; v < vendors_.size(); ++v) {
    VendorRun& vr = vendors_[v];
    while (!vr.queue.empty() && vr.queue.front().due <= t) {
      const InFlight done = vr.queue.front();
      vr.queue.pop_front();
      --vr.in_flight;
      Unit& unit = units_[done.unit];
      const double p = accuracy(v, unit.job_class, done.seq, done.due);
      // Keyed by unit, vendor (and repeat): every policy gets the same answer from the same vendor.
      const std::uint64_t key = v + kMaxVendors * done.repeat;
      const bool correct = Rng::stream(seed_, done.unit, kStreamCorrect * kStreamStride + key).uniform() < p;
      if (unit.gold) {
        vr.evidence[class_scope_[unit.job_class]].observe(correct ? 1 : 0, 1, discount);
        vr.evidence_at[class_scope_[unit.job_class]] = done.due;
      } else {
        std::uint8_t answer = unit.truth;
        if (!correct) {
          Rng r = Rng::stream(seed_, done.unit, kStreamWrongLabel * kStreamStride + key);
          answer = static_cast<std::uint8_t>((unit.truth + 1 + r.below(static_cast<std::size_t>(w_.labels - 1))) %
                                             static_cast<std::size_t>(w_.labels));
        }
        unit.answer[unit.answered++] = answer;
      }
      finish_judgment(done.unit);
    }
  }
}

void Simulation::retry_waiting(double t) {
  if (waiting_.empty()) return;
  std::vector<std::uint32_t> list;
  list.swap(waiting_);
  std::vector<std::uint8_t> fresh(w_.jobs.size(), 0);
  for (std::uint32_t uid : list) {
    const std::size_t c = units_[uid].job_class;
    if (!fresh[c]) {
      refresh_facts(c, t);
      fresh[c] = 1;
    }
    const Unit& unit = units_[uid];
    std::vector<int> used(unit.vendor.begin(), unit.vendor.begin() + unit.assigned);
    refresh_breakers(c, t);
    const int v = policy_->reassign(c, w_.jobs[c].job, facts_[c], used, rng_);
    if (v < 0) {
      if (unit.assigned > 0)
        finish_judgment(uid);  // fewer judgments than planned, as when fewer vendors are eligible
      else
        waiting_.push_back(uid);
      continue;
    }
    ++result_.reroutes;
    place(uid, v, used, t);
  }
}

void Simulation::check_drift(double t) {
  if (!watch_.rule || watch_.triggered) return;
  const DriftRule& rule = *watch_.rule;
  watch_.triggered = (rule.after && t >= static_cast<double>(rule.after->count())) ||
                     (rule.after_tasks && vendors_[static_cast<std::size_t>(watch_.vendor)].seq >= *rule.after_tasks);
}

PolicyResult Simulation::run() {
  for (const auto& d : domains_) result_.domains.push_back({d, 0, 0});
  const std::size_t nc = w_.jobs.size();
  const double dt = static_cast<double>(w_.batch_items) / w_.arrival_per_s;
  std::vector<double> gold_credit(nc, 0);
  std::vector<std::vector<std::uint32_t>> batch(nc);
  std::vector<std::int64_t> batch_items(nc);
  units_.reserve(static_cast<std::size_t>(static_cast<double>(w_.items) * 1.3) + 16);

  std::int64_t next_item = 0;
  double t = 0;
  for (std::int64_t b = 0; next_item < w_.items; ++b) {
    t = static_cast<double>(b) * dt;
    tenth_ = static_cast<std::size_t>(next_item * 10 / w_.items);
    complete_until(t);
    retry_waiting(t);
    check_drift(t);
    const std::int64_t n = std::min(w_.batch_items, w_.items - next_item);
    // The batch's items by class, then each class's gold mixed in at random positions.
    std::fill(batch_items.begin(), batch_items.end(), 0);
    for (std::int64_t i = 0; i < n; ++i) {
      const double u = workload_rng_.uniform();
      double acc = 0;
      std::size_t c = 0;
      for (; c + 1 < nc; ++c) {
        acc += w_.jobs[c].share;
        if (u < acc) break;
      }
      ++batch_items[c];
    }
    for (std::size_t c = 0; c < nc; ++c) {
      batch[c].clear();
      gold_credit[c] += static_cast<double>(batch_items[c]) * w_.jobs[c].gold_rate;
      auto gold = static_cast<std::int64_t>(gold_credit[c]);
      gold_credit[c] -= static_cast<double>(gold);
      std::int64_t items = batch_items[c];
      while (items + gold > 0) {
        const bool is_gold = workload_rng_.uniform() * static_cast<double>(items + gold) < static_cast<double>(gold);
        Unit unit;
        unit.job_class = static_cast<std::uint8_t>(c);
        unit.gold = is_gold;
        unit.truth = static_cast<std::uint8_t>(workload_rng_.below(static_cast<std::size_t>(w_.labels)));
        batch[c].push_back(static_cast<std::uint32_t>(units_.size()));
        units_.push_back(unit);
        (is_gold ? gold : items) -= 1;
      }
    }
    if (watch_.triggered && !watch_.done) watch_.all_items += n;
    for (std::size_t c = 0; c < nc; ++c) {
      if (batch[c].empty()) continue;
      decide(c, batch[c], t);
      if (watch_.triggered && !watch_.done && watch_class_[c]) {
        watch_.scope_items += batch_items[c];
        if (watch_.filled == kReactWindow &&
            static_cast<double>(watch_.vendor_in_ring) < kReactShare * static_cast<double>(kReactWindow)) {
          watch_.done = true;
          result_.react_items = watch_.scope_items;
          result_.react_items_total = watch_.all_items;
        }
      }
    }
    next_item += n;
  }

  // Drain: answers still out, and units waiting for a vendor (an outage may outlast the arrivals).
  double horizon = t + 3600;
  for (const auto& vr : vendors_) {
    for (const auto& [start, end] : vr.outages) horizon = std::max(horizon, end + 3600);
    horizon = std::max(horizon, vr.join_s + 3600);
  }
  tenth_ = 9;
  auto busy = [&] {
    if (!waiting_.empty()) return true;
    for (const auto& vr : vendors_)
      if (!vr.queue.empty()) return true;
    return false;
  };
  while (busy() && t <= horizon) {
    t += dt;
    complete_until(t);
    retry_waiting(t);
  }
  complete_until(std::numeric_limits<double>::infinity());
  result_.virtual_seconds = t;
  result_.lost = w_.items - result_.items;
  result_.accuracy = result_.items ? static_cast<double>(result_.correct) / static_cast<double>(result_.items) : 0;
  result_.cost_per_correct_usd =
      result_.correct ? static_cast<double>(result_.cost_micros) / 1e6 / static_cast<double>(result_.correct) : 0;
  for (const auto& tenth : tenths_) result_.hhi_tenths.push_back(quality::market_concentration(tenth).hhi);
  for (const auto& vr : vendors_) result_.vendors.push_back(vr.result);
  return result_;
}

}  // namespace

PolicyResult simulate(const Scenario& scenario, const Workload& workload, const std::string& policy, std::uint64_t seed) {
  Simulation sim(scenario, workload, policy, seed);
  return sim.run();
}

}  // namespace labelbroker::eval
