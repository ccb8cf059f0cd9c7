#include "jobs/engine.hpp"

#include <algorithm>
#include <future>
#include <set>
#include <unistd.h>

#include "common/backoff.hpp"
#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/money.hpp"
#include "common/time.hpp"
#include "db/dataset_store.hpp"
#include "db/errors.hpp"
#include "db/quality_store.hpp"
#include "jobs/aggregate.hpp"
#include "jobs/webhook_delivery.hpp"

namespace labelbroker::jobs {
namespace {

using Clock = std::chrono::system_clock;
namespace log = common::log;

// Runs one store call on a pooled connection, retrying when PostgreSQL resolved a conflict between
// concurrent transactions by aborting this one (deadlock, serialization): the transaction rolled
// back, so running it again is safe.
template <typename Fn>
auto with_retry(db::ConnectionPool& pool, Fn&& fn) {
  for (int attempt = 1;; ++attempt) {
    try {
      return pool.run(fn);
    } catch (const std::exception& e) {
      if (attempt >= 5 || !db::classify_db_error(e).transient) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(5 * attempt));
    }
  }
}

vendors::WorkUnit unit_for_quote(const db::DispatchJob& job) {
  vendors::WorkUnit unit;
  unit.job_id = job.id;
  unit.task_type = job.task_type;
  unit.domain = job.domain;
  unit.expertise = job.expertise;
  unit.labels = job.labels;
  return unit;
}


}  // namespace

std::chrono::milliseconds retry_backoff(int attempt, std::chrono::milliseconds initial, std::chrono::milliseconds max,
                                        std::optional<std::chrono::milliseconds> retry_after, std::mt19937_64& rng) {
  return std::max(common::full_jitter_backoff(attempt, initial, max, rng),
                  retry_after.value_or(std::chrono::milliseconds(0)));
}
// ---- VendorBook ---------------------------------------------------------------------------------

VendorBook::VendorBook(const vendors::VendorSet& vendors, const std::vector<config::VendorConfig>& configs,
                       const config::RoutingConfig& routing)
    : vendors_(vendors) {
  for (const auto& c : configs) {
    // Already validated by the adapter's factory at start-up.
    Configured& out = configured_[c.id];
    out.enabled = c.settings.value("enabled", true);
    out.weight = c.settings.value("weight", 1.0);
    out.max_outstanding = c.settings.value("max_outstanding_units", std::int64_t{0});
    const auto cap = c.settings.value("monthly_spend_cap_usd", std::string());
    if (!cap.empty()) out.monthly_cap = common::parse_usd_micros(cap);
  }
  breaker_options_.consecutive_failures = routing.breaker_consecutive_failures;
  breaker_options_.failure_rate = routing.breaker_failure_rate;
  breaker_options_.min_requests = routing.breaker_min_requests;
  breaker_options_.window = routing.breaker_window;
  breaker_options_.cooldown = routing.breaker_cooldown;
}

VendorBook::Configured VendorBook::configured(const std::string& vendor_id) const {
  auto it = configured_.find(vendor_id);
  return it == configured_.end() ? Configured{} : it->second;
}

std::pair<bool, double> VendorBook::effective(const std::string& vendor_id) const {
  const auto c = configured(vendor_id);
  std::lock_guard lock(mutex_);
  auto it = settings_.find(vendor_id);
  if (it == settings_.end()) return {c.enabled, c.weight};
  return {it->second.enabled.value_or(c.enabled), it->second.weight.value_or(c.weight)};
}

std::vector<routing::VendorFacts> VendorBook::facts() const {
  std::vector<routing::VendorFacts> out;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& adapter : vendors_.all()) {
    routing::VendorFacts f;
    f.id = adapter->id();
    f.capabilities = adapter->capabilities();
    const auto c = configured(f.id);
    std::tie(f.enabled, f.weight) = effective(f.id);
    f.max_in_flight = c.max_outstanding;
    f.monthly_cap_micros = c.monthly_cap;
    {
      std::lock_guard lock(mutex_);
      auto it = breakers_.find(f.id);
      f.breaker = it == breakers_.end() ? routing::BreakerState::closed : it->second.state(now);
    }
    // Half-open vendors stay routable: their queued work is what the probe sends.
    f.breaker_allows = f.breaker != routing::BreakerState::open;
    out.push_back(std::move(f));
  }
  return out;
}

std::optional<std::int64_t> VendorBook::monthly_cap(const std::string& vendor_id) const {
  return configured(vendor_id).monthly_cap;
}

bool VendorBook::allow_send(const std::string& vendor_id) {
  std::lock_guard lock(mutex_);
  auto [it, fresh] = breakers_.try_emplace(vendor_id, breaker_options_);
  return it->second.allow(std::chrono::steady_clock::now());
}

void VendorBook::release_probe(const std::string& vendor_id) {
  std::lock_guard lock(mutex_);
  if (auto it = breakers_.find(vendor_id); it != breakers_.end()) it->second.release_probe();
}

void VendorBook::record_success(const std::string& vendor_id) {
  std::lock_guard lock(mutex_);
  auto [it, fresh] = breakers_.try_emplace(vendor_id, breaker_options_);
  const bool was_closed = it->second.state(std::chrono::steady_clock::now()) == routing::BreakerState::closed;
  it->second.record_success(std::chrono::steady_clock::now());
  if (!was_closed) log::info("vendor circuit breaker closed", {{"vendor", vendor_id}});
}

void VendorBook::record_failure(const std::string& vendor_id, std::optional<std::chrono::milliseconds> retry_after) {
  std::lock_guard lock(mutex_);
  auto [it, fresh] = breakers_.try_emplace(vendor_id, breaker_options_);
  const auto now = std::chrono::steady_clock::now();
  const bool was_open = it->second.state(now) == routing::BreakerState::open;
  it->second.record_failure(now, retry_after);
  if (!was_open && it->second.state(now) == routing::BreakerState::open)
    log::warn("vendor circuit breaker opened; routing new work elsewhere",
              {{"vendor", vendor_id}, {"consecutive_failures", it->second.consecutive_failures()}});
}

nlohmann::json VendorBook::describe(const std::string& vendor_id) const {
  const auto steady_now = std::chrono::steady_clock::now();
  const auto wall_now = std::chrono::system_clock::now();
  auto wall = [&](std::chrono::steady_clock::time_point t) {
    return common::format_rfc3339(wall_now + std::chrono::duration_cast<std::chrono::system_clock::duration>(t - steady_now));
  };
  std::lock_guard lock(mutex_);
  auto it = breakers_.find(vendor_id);
  if (it == breakers_.end())
    return {{"state", "closed"}, {"consecutive_failures", 0}, {"window_requests", 0}, {"window_failures", 0}};
  const auto& b = it->second;
  nlohmann::json out = {{"state", routing::to_string(b.state(steady_now))},
                        {"consecutive_failures", b.consecutive_failures()},
                        {"window_requests", b.window_requests()},
                        {"window_failures", b.window_failures()}};
  if (auto t = b.opened_at()) out["opened_at"] = wall(*t);
  if (auto t = b.reopen_at()) out["probe_after"] = wall(*t);
  return out;
}

void VendorBook::count_error(const std::string& vendor_id, vendors::ErrorClass error_class) {
  const auto index = static_cast<std::size_t>(error_class);
  if (index >= kErrorClasses) return;
  std::lock_guard lock(mutex_);
  ++errors_[vendor_id][index];
}

std::vector<VendorBook::VendorStatus> VendorBook::statuses() const {
  const auto now = std::chrono::steady_clock::now();
  std::vector<VendorStatus> out;
  std::lock_guard lock(mutex_);
  for (const auto& adapter : vendors_.all()) {
    VendorStatus s;
    s.id = adapter->id();
    if (auto it = breakers_.find(s.id); it != breakers_.end()) s.breaker = it->second.state(now);
    if (auto it = errors_.find(s.id); it != errors_.end()) s.errors = it->second;
    out.push_back(std::move(s));
  }
  return out;
}

void VendorBook::apply_settings(const std::map<std::string, db::VendorSetting>& settings) {
  std::lock_guard lock(mutex_);
  settings_ = settings;
}

// ---- Dispatch -----------------------------------------------------------------------------------

namespace {

routing::RoutingOptions routing_options(const config::RoutingConfig& c, const config::QualityConfig& q) {
  routing::RoutingOptions o;
  o.max_share = c.max_share;
  o.domain_max_share = c.domain_max_share;
  o.min_share = c.min_share;
  o.temperature = c.temperature;
  o.prior = {q.prior_alpha, q.prior_beta};
  o.credible = c.credible;
  o.share_cap_min_window = c.share_cap_min_window;
  o.evidence_discount = c.evidence_discount;
  o.evidence_half_life_hours = c.evidence_half_life_hours;
  o.floor_min_evidence = c.floor_min_evidence;
  return o;
}

std::string facts_key(const db::DispatchJob& job) {
  return db::routing_scope(job.domain, std::string(vendors::to_string(job.task_type))) + "#" +
         std::to_string(job.team_id);
}

std::mt19937_64& thread_rng() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return rng;
}

// How long a chunk that no vendor can take now waits before it is routed again.
constexpr std::chrono::milliseconds kPlanRetry{2000};

double rounded(double x, double unit = 1e-4) { return std::round(x / unit) * unit; }

// The decision as the log and GET /v1/jobs/{id}/routing show it.
nlohmann::json decision_json(const routing::Decision& d, const std::vector<routing::VendorFacts>& facts,
                             const std::vector<routing::Verdict>& verdicts, const std::string& scope) {
  nlohmann::json vendors_json = nlohmann::json::array();
  for (std::size_t i = 0; i < d.vendors.size(); ++i) {
    const auto& v = d.vendors[i];
    nlohmann::json line = {{"vendor", v.id}, {"eligible", v.eligible}};
    if (!v.eligible) {
      line["removed_by"] = routing::to_string(verdicts[i].removal);
      line["detail"] = verdicts[i].detail;
    } else {
      line["sampled_accuracy"] = rounded(v.sampled_p);
      line["gold_evidence"] = {{"correct", rounded(facts[i].gold_correct, 0.01)}, {"n", rounded(facts[i].gold_n, 0.01)}};
      line["cost_per_correct_usd"] = common::format_usd(static_cast<std::int64_t>(std::llround(v.cost_per_correct_micros)));
      line["score"] = rounded(v.score);
      line["target_share"] = rounded(v.target_share);
      line["capped"] = v.capped;
    }
    line["realised_share"] = rounded(v.realised_share_before);
    line["chosen"] = v.chosen_count;
    vendors_json.push_back(std::move(line));
  }
  return {{"scope", scope},
          {"optimize", routing::to_string(d.optimize)},
          {"temperature", d.temperature},
          {"min_share", d.min_share},
          {"max_share", d.max_share},
          {"effective_max_share", rounded(d.effective_max_share)},
          {"cap_unsatisfiable", d.cap_unsatisfiable},
          {"min_share_relaxed", d.min_share_relaxed},
          {"vendors", vendors_json}};
}

}  // namespace

Dispatch::Dispatch(db::ConnectionPool& pool, const vendors::VendorSet& vendors,
                   const std::vector<config::VendorConfig>& configs, const config::QualityConfig& quality,
                   const config::RoutingConfig& routing)
    : pool_(pool),
      vendors_(vendors),
      book_(vendors, configs, routing),
      quality_(quality),
      routing_config_(routing),
      router_(routing_options(routing, quality)) {}

std::int64_t Dispatch::quote(const db::DispatchJob& job, const std::string& vendor_id) const {
  const auto* adapter = vendors_.find(vendor_id);
  return adapter ? adapter->quote_micros(unit_for_quote(job)) : 0;
}

routing::JobFacts Dispatch::job_facts(const db::DispatchJob& job, const db::RoutingSnapshot& facts) const {
  routing::JobFacts j;
  j.job_id = job.id;
  j.team_id = job.team_id;
  j.task_type = job.task_type;
  j.domain = job.domain;
  j.expertise = job.expertise;
  j.allow = job.allow_vendors;
  j.deny = job.deny_vendors;
  j.team_deny = facts.team_denied_vendors;
  j.min_vendor_accuracy = job.min_vendor_accuracy;
  j.optimize = routing::parse_optimize(job.optimize).value_or(routing::Optimize::balanced);
  j.redundancy = job.redundancy;
  j.team_monthly_cap_micros = facts.team_monthly_cap_micros;
  j.team_monthly_spend_micros = facts.team_monthly_spend_micros;
  if (auto it = routing_config_.team_max_share.find(facts.team_name); it != routing_config_.team_max_share.end())
    j.team_max_share = it->second;
  j.seconds_to_deadline = std::chrono::duration<double>(job.deadline - Clock::now()).count();
  return j;
}

std::vector<routing::VendorFacts> Dispatch::vendor_facts(const db::DispatchJob& job,
                                                         const db::RoutingSnapshot& facts) const {
  auto out = book_.facts();
  std::map<std::string, double> latency;
  {
    std::lock_guard lock(facts_mutex_);
    latency = median_latency_s_;
  }
  for (auto& f : out) {
    f.cost_micros = quote(job, f.id);
    if (auto l = latency.find(f.id); l != latency.end()) f.median_latency_s = l->second;
    auto it = facts.vendors.find(f.id);
    if (it == facts.vendors.end()) continue;
    f.in_flight = it->second.outstanding;
    f.monthly_spend_micros = it->second.monthly_spend_micros;
    f.gold_correct = it->second.gold_correct;
    f.gold_n = it->second.gold_n;
    f.evidence_age_hours = it->second.evidence_age_hours;
    f.window_judgments = it->second.window_judgments;
  }
  return out;
}

db::RoutingSnapshot Dispatch::cached_facts(const db::DispatchJob& job) const {
  std::lock_guard lock(facts_mutex_);
  auto it = facts_.find(facts_key(job));
  return it == facts_.end() ? db::RoutingSnapshot{} : it->second;
}

void Dispatch::remember_facts(const db::DispatchJob& job, const db::RoutingSnapshot& facts) {
  std::lock_guard lock(facts_mutex_);
  facts_[facts_key(job)] = facts;
}

db::PlannedChunk Dispatch::plan(const db::DispatchJob& job, const std::vector<std::string>& item_ids,
                                const db::RoutingSnapshot& facts) {
  remember_facts(job, facts);
  const auto jf = job_facts(job, facts);
  const auto vf = vendor_facts(job, facts);
  routing::CounterBook counters;
  for (const auto& [vendor, v] : facts.vendors)
    if (v.counter != 0) counters[vendor] = v.counter;
  auto result = router_.route(jf, vf, item_ids.size(), thread_rng(), counters);

  db::PlannedChunk chunk;
  chunk.items.reserve(item_ids.size());
  std::map<std::string, std::int64_t> quotes;
  for (const auto& f : vf) quotes[f.id] = f.cost_micros;
  for (std::size_t i = 0; i < item_ids.size(); ++i) {
    db::PlannedItem item{item_ids[i], {}};
    for (const auto& vendor : result.items[i]) item.vendors.emplace_back(vendor, quotes[vendor]);
    chunk.items.push_back(std::move(item));
  }
  chunk.routing.counters = std::move(counters);
  chunk.routing.decision = decision_json(result.decision, vf, result.verdicts, routing::counter_scope(jf));
  // No vendor can take the items now. If that may pass (a breaker, capacity, a spend cap, an
  // admin's drain, a quality floor whose evidence fades), the chunk waits and is routed again
  // later; only vendors that can never take the job (capabilities, allow and deny lists) make its
  // items end unlabeled at once.
  const auto& verdicts = result.verdicts;
  const bool none_eligible = std::none_of(verdicts.begin(), verdicts.end(),
                                          [](const routing::Verdict& v) { return v.removal == routing::Removal::none; });
  const bool may_pass = std::any_of(verdicts.begin(), verdicts.end(), [](const routing::Verdict& v) {
    using routing::Removal;
    const auto r = v.removal;
    return r != Removal::capability && r != Removal::job_allow_list && r != Removal::job_deny_list &&
           r != Removal::team_deny_list;
  });
  if (none_eligible && may_pass) chunk.wait = kPlanRetry;
  return chunk;
}

std::optional<db::RerouteChoice> Dispatch::reroute(const db::DispatchJob& job, const std::vector<std::string>& used) {
  const auto facts = cached_facts(job);
  const auto jf = job_facts(job, facts);
  const auto vf = vendor_facts(job, facts);
  const auto scope = routing::counter_scope(jf);
  std::optional<std::string> chosen;
  std::vector<routing::Verdict> verdicts;
  {
    std::lock_guard lock(facts_mutex_);
    chosen = router_.reroute(jf, vf, used, thread_rng(), reroute_counters_[scope], &verdicts);
  }
  if (!chosen) return std::nullopt;
  // The log keeps why each vendor could or could not take it.
  nlohmann::json candidates = nlohmann::json::array();
  for (std::size_t i = 0; i < vf.size(); ++i) {
    nlohmann::json line = {{"vendor", vf[i].id}};
    if (std::find(used.begin(), used.end(), vf[i].id) != used.end())
      line["removed_by"] = "already_used";
    else if (verdicts[i].removal != routing::Removal::none) {
      line["removed_by"] = routing::to_string(verdicts[i].removal);
      line["detail"] = verdicts[i].detail;
    } else {
      line["eligible"] = true;
    }
    candidates.push_back(std::move(line));
  }
  const auto cost = quote(job, *chosen);
  return db::RerouteChoice{*chosen, cost,
                           {{"scope", scope}, {"chosen", *chosen}, {"used", used}, {"vendors", candidates}}};
}

std::optional<db::MoveResult> Dispatch::rebalance() {
  refresh_latencies();
  const auto jobs = with_retry(pool_, [&](auto& c) { return db::jobs_with_unstarted_units(c, 200); });
  std::vector<db::MoveOrder> orders;
  std::map<std::string, db::RoutingSnapshot> seen;  // one read per scope and team per pass
  std::map<std::string, std::int64_t> excess_left;   // domain/vendor -> judgments over its cap
  for (const auto& job : jobs) {
    const auto key = facts_key(job);
    auto it = seen.find(key);
    if (it == seen.end()) {
      db::SnapshotRequest request;
      request.team_id = job.team_id;
      request.domain = job.domain;
      request.task_type = std::string(vendors::to_string(job.task_type));
      request.window = routing_config_.window;
      it = seen.emplace(key, with_retry(pool_, [&](auto& c) { return db::read_routing_snapshot(c, request); })).first;
      remember_facts(job, it->second);
    }
    const auto jf = job_facts(job, it->second);
    const auto vf = vendor_facts(job, it->second);
    const auto verdicts = router_.filter(jf, vf);
    // Moving work needs somewhere to go: with no vendor eligible for the job (an outage of its
    // only vendor, say) the work waits where it is.
    if (std::none_of(verdicts.begin(), verdicts.end(),
                     [](const routing::Verdict& v) { return v.removal == routing::Removal::none; }))
      continue;
    std::int64_t window_total = 0;
    for (const auto& f : vf) window_total += f.window_judgments;
    for (std::size_t i = 0; i < vf.size(); ++i) {
      using routing::Removal;
      const auto r = verdicts[i].removal;
      // Capacity and spend caps only pause a vendor; capability and allow lists were settled at
      // intake (and nothing was planned there).
      if (r != Removal::job_deny_list && r != Removal::team_deny_list && r != Removal::disabled &&
          r != Removal::drained && r != Removal::breaker_open && r != Removal::below_quality_floor &&
          r != Removal::over_share_cap && r != Removal::late_for_deadline)
        continue;
      db::MoveOrder order{vf[i].id, job.id, std::nullopt, routing::to_string(r), routing_config_.rebalance_max_units};
      if (r == Removal::over_share_cap) {
        // Only the excess over the cap, shared by the domain's jobs, or the moves themselves would
        // push the vendor under its floor.
        const double cap = router_.options().max_share_for(job.domain, jf.team_max_share);
        auto [excess, fresh] = excess_left.try_emplace(
            job.domain + "/" + vf[i].id,
            vf[i].window_judgments - static_cast<std::int64_t>(cap * static_cast<double>(window_total)));
        if (excess->second <= 0) continue;
        order.max_units = static_cast<std::size_t>(excess->second);
        excess->second = 0;
      }
      orders.push_back(std::move(order));
    }
  }
  if (orders.empty()) return db::MoveResult{};
  auto r = rules();
  return with_retry(pool_, [&](auto& c) { return db::rebalance_units(c, orders, routing_config_.rebalance_max_units, r); });
}

void Dispatch::refresh_latencies() {
  db::RollupFilter filter;
  filter.window_hours = 24;
  const auto totals = with_retry(pool_, [&](auto& c) { return db::load_rollups(c, filter); });
  std::map<std::string, double> latency;
  for (const auto& v : totals.vendors)
    if (auto ms = v.latency.quantile(0.5)) latency[v.vendor_id] = *ms / 1000.0;
  std::lock_guard lock(facts_mutex_);
  median_latency_s_ = std::move(latency);
}

db::VendorOverride Dispatch::set_vendor(const std::string& vendor_id, std::optional<bool> enabled,
                                        std::optional<double> weight, const db::AuditContext& audit) {
  auto setting =
      with_retry(pool_, [&](auto& c) { return db::update_vendor_override(c, vendor_id, enabled, weight, audit); });
  refresh_vendor_settings();
  return setting;
}

double Dispatch::share_cap(const std::string& domain, const std::string& team_name) const {
  std::optional<double> team_cap;
  if (auto it = routing_config_.team_max_share.find(team_name); it != routing_config_.team_max_share.end())
    team_cap = it->second;
  return router_.options().max_share_for(domain, team_cap);
}

void Dispatch::refresh_vendor_settings() {
  book_.apply_settings(with_retry(pool_, [](auto& c) { return db::load_vendor_settings(c); }));
}

db::DispatchRules Dispatch::rules() {
  db::DispatchRules rules;
  rules.reroute = [this](const db::DispatchJob& job, const std::vector<std::string>& used) {
    return reroute(job, used);
  };
  rules.aggregate = [](const db::DispatchJob& job,
                       const std::vector<std::string>& answers) -> std::optional<db::ItemLabel> {
    auto label = majority_vote(job.labels, answers);
    if (!label) return std::nullopt;
    return db::ItemLabel{label->label, label->confidence, label->method};
  };
  quality::DawidSkeneOptions ds;
  ds.max_iterations = quality_.ds_max_iterations;
  ds.tolerance = quality_.ds_tolerance;
  rules.relabel = [ds](const db::DispatchJob& job, const std::vector<db::JobJudgment>& judgments) {
    std::vector<ItemAnswer> answers;
    answers.reserve(judgments.size());
    for (const auto& j : judgments) answers.push_back({j.item_id, j.vendor_id, j.answer});
    const auto labels = dawid_skene_labels(job.labels, answers, ds);
    db::JobRelabel out;
    out.items.reserve(labels.items.size());
    for (const auto& item : labels.items)
      out.items.push_back({item.item_id, {item.label.label, item.label.confidence, item.label.method}});
    for (const auto& v : labels.vendors) out.vendors.push_back({v.vendor_id, v.accuracy, v.judgments});
    return out;
  };
  return rules;
}

struct Dispatch::PendingResults {
  const std::string* vendor_id;
  const std::vector<vendors::UnitResult>* results;
  std::promise<db::IngestSummary> done;
};

namespace {
constexpr int kResultWriters = 2;
constexpr std::size_t kRollupBatch = 20000;      // events per rollup transaction
constexpr std::size_t kLedgerDeltaBatch = 20000;  // budget deltas per transaction
constexpr std::size_t kMaxGroupsPerCommit = 256;
}  // namespace

Dispatch::~Dispatch() {
  {
    std::lock_guard lock(ingest_mutex_);
    ingest_stopping_ = true;
  }
  ingest_ready_.notify_all();
  for (auto& t : writers_) t.join();
}

db::IngestSummary Dispatch::ingest(const std::string& vendor_id, const std::vector<vendors::UnitResult>& results) {
  PendingResults pending{&vendor_id, &results, {}};
  auto done = pending.done.get_future();
  {
    std::lock_guard lock(ingest_mutex_);
    if (writers_.empty())
      for (int i = 0; i < kResultWriters; ++i) writers_.emplace_back([this] { write_results(); });
    ingest_queue_.push_back(&pending);
  }
  ingest_ready_.notify_one();
  return done.get();  // rethrows the batch's error
}

void Dispatch::write_results() {
  auto r = rules();
  while (true) {
    std::vector<PendingResults*> batch;
    {
      std::unique_lock lock(ingest_mutex_);
      ingest_ready_.wait(lock, [this] { return ingest_stopping_ || !ingest_queue_.empty(); });
      if (ingest_queue_.empty()) return;  // stopping, nothing left
      while (!ingest_queue_.empty() && batch.size() < kMaxGroupsPerCommit) {
        batch.push_back(ingest_queue_.front());
        ingest_queue_.pop_front();
      }
    }
    std::vector<db::ResultGroup> groups;
    groups.reserve(batch.size());
    for (const auto* p : batch) groups.push_back({*p->vendor_id, *p->results});
    try {
      auto summaries = with_retry(pool_, [&](auto& c) { return db::record_results(c, groups, r); });
      for (std::size_t i = 0; i < batch.size(); ++i) batch[i]->done.set_value(summaries[i]);
    } catch (...) {
      for (auto* p : batch) p->done.set_exception(std::current_exception());
    }
  }
}

db::CancelResult Dispatch::cancel(std::int64_t team_id, const std::string& job_id) {
  auto r = rules();
  return with_retry(pool_, [&](auto& c) { return db::cancel_job(c, team_id, job_id, r); });
}

db::BudgetChangeResult Dispatch::set_budget(std::int64_t team_id, const std::string& job_id,
                                            std::int64_t budget_micros) {
  return with_retry(pool_, [&](auto& c) { return db::set_job_budget(c, team_id, job_id, budget_micros); });
}

// ---- Engine -------------------------------------------------------------------------------------

Engine::Engine(Dispatch& dispatch, const config::DispatchConfig& options, WebhookDelivery* webhooks,
               const datasets::FileCache* dataset_files)
    : dispatch_(dispatch), options_(options), webhooks_(webhooks), dataset_files_(dataset_files) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  owner_ = std::string(host) + ":" + std::to_string(getpid()) + ":" + common::random_hex(4);
}

Engine::~Engine() { stop(); }

void Engine::start() {
  if (!threads_.empty()) return;
  stopping_ = false;
  threads_.emplace_back([this] { run_planner(); });
  for (const auto& adapter : dispatch_.vendors().all())
    for (int i = 0; i < options_.workers_per_vendor; ++i)
      threads_.emplace_back([this, a = adapter.get()] { run_dispatcher(a); });
  threads_.emplace_back([this] { run_poller(); });
  threads_.emplace_back([this] { run_canceller(); });
  threads_.emplace_back([this] { run_maintenance(); });
  if (dispatch_.routing().rebalance) threads_.emplace_back([this] { run_rebalancer(); });
  threads_.emplace_back([this] { run_dataset_builder(); });
  if (webhooks_) threads_.emplace_back([this] { run_webhooks(); });
  log::info("dispatch started", {{"owner", owner_}, {"threads", threads_.size()}});
}

void Engine::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

bool Engine::pause(std::chrono::milliseconds d) {
  std::unique_lock lock(mutex_);
  return !wake_.wait_for(lock, d, [this] { return stopping_.load(); });
}

template <typename Fn>
auto Engine::counting_errors(vendors::VendorAdapter& adapter, Fn&& fn) {
  try {
    return fn();
  } catch (const vendors::VendorError& e) {
    dispatch_.book().count_error(adapter.id(), e.error_class());
    throw;
  }
}

// Each loop survives any error (database down, vendor garbage): it logs, waits a second, and goes
// on. Returns false when the engine is stopping.
template <typename Fn>
bool Engine::guarded(const char* step, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const std::exception& e) {
    log::warn("background step failed; will retry", {{"step", step}, {"error", e.what()}});
    return pause(std::chrono::milliseconds(1000));
  }
}

void Engine::run_planner() {
  while (!stopping_) {
    bool planned = false;
    guarded("planning", [&] {
      planned = with_retry(dispatch_.pool(), [&](auto& c) {
        db::PlanOptions plan;
        plan.chunk = options_.plan_chunk_items;
        plan.window = dispatch_.routing().window;
        plan.plan_ahead = options_.plan_ahead_items;
        return db::plan_next_chunk(c, plan,
                                   [&](const db::DispatchJob& job, const auto& ids, const db::RoutingSnapshot& facts) {
                                     return dispatch_.plan(job, ids, facts);
                                   });
      });
    });
    if (!planned && !pause(options_.idle_wait)) return;
  }
}

void Engine::run_dispatcher(vendors::VendorAdapter* adapter) {
  std::mt19937_64 rng(std::random_device{}());
  const auto batch_size = std::max<std::size_t>(1, adapter->capabilities().max_batch_size);
  const auto rules = dispatch_.rules();
  db::ClaimOptions claim;
  claim.owner = owner_;
  claim.lease = options_.lease;
  claim.gold_rate = dispatch_.quality().gold_rate;
  claim.vendor_monthly_budget_micros = dispatch_.book().monthly_cap(adapter->id());
  auto& book = dispatch_.book();
  while (!stopping_) {
    bool sent = false;
    // An open breaker sends nothing until its cooldown; then one batch goes as the probe.
    if (book.allow_send(adapter->id())) {
      guarded("dispatch", [&] {
        auto batch = with_retry(dispatch_.pool(), [&](auto& c) {
          return db::claim_batch(c, adapter->id(), batch_size, claim, rules);
        });
        if (!batch.units.empty()) {
          send_batch(*adapter, batch, rng);
          sent = true;
        }
      });
      if (!sent) book.release_probe(adapter->id());
    }
    if (!sent && !pause(options_.idle_wait)) return;
  }
}

void Engine::send_batch(vendors::VendorAdapter& adapter, db::ClaimedBatch& batch, std::mt19937_64& rng) {
  std::vector<vendors::WorkUnit> units;
  std::map<std::string, int> attempts;
  units.reserve(batch.units.size());
  for (auto& u : batch.units) {
    attempts[u.unit.assignment_id] = u.attempts;
    units.push_back(std::move(u.unit));
  }
  vendors::SubmitResult result;
  auto& book = dispatch_.book();
  try {
    result = adapter.submit(units);
    // Units the vendor refused one by one are an error each.
    for (const auto& f : result.failed) book.count_error(adapter.id(), f.error_class);
  } catch (const vendors::VendorError& e) {
    book.count_error(adapter.id(), e.error_class());  // one failed request, however many units
    for (const auto& u : units)
      result.failed.push_back({u.assignment_id, e.error_class(), e.what(), e.retry_after()});
  } catch (const std::exception& e) {
    // Not a classified vendor error: assume nothing is known and retry the batch as it was.
    book.count_error(adapter.id(), vendors::ErrorClass::retryable);
    for (const auto& u : units) result.failed.push_back({u.assignment_id, vendors::ErrorClass::retryable, e.what(), {}});
  }
  // The breaker counts a batch the vendor did not take because it is down, overloaded or refusing
  // the broker (5xx, timeouts, 429, auth); a batch refused unit by unit as invalid says the vendor
  // is up.
  std::optional<std::chrono::milliseconds> retry_after;
  bool vendor_failed = result.submitted.empty() && !result.failed.empty();
  for (const auto& f : result.failed) {
    if (f.error_class == vendors::ErrorClass::permanent) vendor_failed = false;
    if (f.retry_after) retry_after = std::max(retry_after.value_or(std::chrono::milliseconds(0)), *f.retry_after);
  }
  if (vendor_failed)
    dispatch_.book().record_failure(adapter.id(), retry_after);
  else
    dispatch_.book().record_success(adapter.id());

  std::vector<db::SendFailure> failures;
  const auto now = Clock::now();
  for (const auto& f : result.failed) {
    db::SendFailure failure{f.assignment_id, f.error_class, f.message, std::nullopt, std::nullopt};
    const int sent = attempts.count(f.assignment_id) ? attempts[f.assignment_id] : options_.max_attempts;
    // Retryable (and an unresolved duplicate) failures stay with this vendor until the attempts
    // run out; permanent, auth and capacity failures move the unit to another vendor now (a
    // capacity failure waits for this vendor when there is no other).
    const bool retry = (f.error_class == vendors::ErrorClass::retryable ||
                        f.error_class == vendors::ErrorClass::duplicate) &&
                       sent < options_.max_attempts;
    const auto wait = retry_backoff(sent, options_.backoff_initial, options_.backoff_max, f.retry_after, rng);
    if (retry)
      failure.retry_at = now + wait;
    else if (f.error_class == vendors::ErrorClass::capacity)
      failure.wait_at = now + wait;  // used only when no other vendor can take the unit
    failures.push_back(std::move(failure));
  }
  if (!failures.empty())
    log::warn("vendor send failed", {{"vendor", adapter.id()},
                                     {"units", failures.size()},
                                     {"class", std::string(vendors::to_string(failures.front().error_class))},
                                     {"error", failures.front().message}});
  auto rules = dispatch_.rules();
  with_retry(dispatch_.pool(), [&](auto& c) {
    return db::record_send(c, owner_, result.submitted, failures, rules);
  });
}

void Engine::run_poller() {
  while (!stopping_) {
    for (const auto& adapter : dispatch_.vendors().all()) {
      if (stopping_) return;
      guarded("poll", [&] {
        auto refs = with_retry(dispatch_.pool(), [&](auto& c) {
          return db::claim_units_to_poll(c, adapter->id(), options_.poll_after, 500);
        });
        if (!refs.empty()) {
          auto results = counting_errors(*adapter, [&] { return adapter->poll(refs); });
          auto summary = dispatch_.ingest(adapter->id(), results);
          if (summary.recorded > 0)
            log::info("results recovered by polling", {{"vendor", adapter->id()}, {"recorded", summary.recorded}});
        }
      });
    }
    if (!pause(options_.poll_interval)) return;
  }
}

void Engine::run_canceller() {
  const auto rules = dispatch_.rules();
  while (!stopping_) {
    bool worked = false;
    for (const auto& adapter : dispatch_.vendors().all()) {
      if (stopping_) return;
      guarded("cancel", [&] {
        auto targets = with_retry(dispatch_.pool(), [&](auto& c) {
          return db::claim_units_to_cancel(c, adapter->id(), 200, std::chrono::seconds(30));
        });
        if (targets.empty()) return;
        worked = true;
        std::vector<std::string> canceled, keep;
        // A canceled job's units: vendors that cancel in bulk (Surge projects) do it per job, and
        // their units' states are read back. The rebalancer's moves are single units of a job that
        // goes on, so they are always canceled one by one.
        std::set<std::string> jobs;
        std::vector<db::CancelTarget> single;
        for (const auto& t : targets) {
          if (t.move)
            single.push_back(t);
          else
            jobs.insert(t.job_id);
        }
        bool bulk = !jobs.empty();
        for (const auto& job : jobs)
          if (!counting_errors(*adapter, [&] { return adapter->cancel_job(job); })) bulk = false;
        if (bulk) {
          std::vector<vendors::UnitRef> refs;
          for (const auto& t : targets)
            if (!t.move) refs.push_back(t.ref);
          std::set<std::string> gone;
          for (const auto& r : counting_errors(*adapter, [&] { return adapter->poll(refs); }))
            if (r.status == vendors::UnitStatus::canceled) gone.insert(r.assignment_id);
          for (const auto& t : targets)
            if (!t.move) (gone.count(t.ref.assignment_id) ? canceled : keep).push_back(t.ref.assignment_id);
        } else {
          for (const auto& t : targets)
            if (!t.move) single.push_back(t);
        }
        for (const auto& t : single) {
          try {
            auto outcome = adapter->cancel(t.ref);
            if (outcome == vendors::CancelOutcome::canceled || outcome == vendors::CancelOutcome::not_found)
              canceled.push_back(t.ref.assignment_id);
            else
              keep.push_back(t.ref.assignment_id);
          } catch (const vendors::VendorError& e) {
            // Asked again when the claim runs out.
            dispatch_.book().count_error(adapter->id(), e.error_class());
          }
        }
        with_retry(dispatch_.pool(), [&](auto& c) {
          db::record_cancel_outcomes(c, canceled, keep, rules);
          return 0;
        });
      });
    }
    if (!worked && !pause(options_.idle_wait)) return;
  }
}

void Engine::run_maintenance() {
  auto rules = dispatch_.rules();
  while (!stopping_) {
    guarded("maintenance", [&] {
      auto& pool = dispatch_.pool();
      if (auto n = with_retry(pool, [](auto& c) { return db::release_expired_leases(c); }); n > 0)
        log::info("took over expired claims", {{"units", n}});
      if (auto n = with_retry(pool, [&](auto& c) { return db::expire_deadlines(c, rules); }); n > 0)
        log::info("jobs ended at their deadline", {{"jobs", n}});
      while (with_retry(pool, [](auto& c) { return db::apply_ledger_deltas(c, kLedgerDeltaBatch); }) >=
             kLedgerDeltaBatch) {
      }
      if (auto n = with_retry(pool, [](auto& c) { return db::mark_budget_exhausted(c); }); n > 0)
        log::info("jobs stopped by their budget", {{"jobs", n}});
      while (with_retry(pool, [&](auto& c) { return db::finish_jobs(c, rules); }) > 0) {
      }
      const double discount = dispatch_.routing().evidence_discount;
      while (with_retry(pool, [&](auto& c) { return db::roll_up_quality(c, kRollupBatch, discount); }) >=
             kRollupBatch) {
      }
      dispatch_.refresh_vendor_settings();
    });
    if (!pause(options_.maintenance_interval)) return;
  }
}

// Every few seconds, moves unstarted work off vendors the policy would no longer route it to.
// Several processes run this loop; the store's advisory lock lets one of them work at a time.
void Engine::run_rebalancer() {
  while (!stopping_) {
    guarded("rebalance", [&] {
      auto result = dispatch_.rebalance();
      if (result && (result->moved > 0 || result->cancel_requested > 0))
        log::info("rebalanced unstarted work",
                  {{"moved", result->moved}, {"cancel_requested", result->cancel_requested}});
    });
    if (!pause(dispatch_.routing().rebalance_interval)) return;
  }
}

// Materialises dataset versions (POST /v1/datasets) one at a time; versions are claimed, so any
// number of processes build side by side.
void Engine::run_dataset_builder() {
  while (!stopping_) {
    bool built = false;
    guarded("dataset build", [&] {
      // The local copy is written as the lines are hashed; a failed attempt drops its writer and
      // with it the partial file.
      std::shared_ptr<datasets::FileCache::Writer> writer;
      db::OpenBuildSink open_sink;
      if (dataset_files_ && dataset_files_->enabled())
        open_sink = [&](const std::string& version_id) {
          writer.reset();  // a failed attempt's partial file goes before the next one starts
          writer = dataset_files_->start(version_id);
          if (!writer) return db::BuildSink{};
          return db::BuildSink{[w = writer.get()](std::string_view line) { w->line(line); },
                               [w = writer.get()] { w->finish(); }};
        };
      built = with_retry(dispatch_.pool(), [&](auto& c) { return db::build_next_dataset_version(c, open_sink); });
      if (built) log::info("dataset version built");
    });
    if (!built && !pause(options_.idle_wait)) return;
  }
}

void Engine::run_webhooks() {
  while (!stopping_) {
    std::size_t attempted = 0;
    guarded("webhook delivery", [&] { attempted = webhooks_->run_once(); });
    if (attempted == 0 && !pause(options_.idle_wait)) return;
  }
}

}  // namespace labelbroker::jobs
