#include "jobs/engine.hpp"

#include <algorithm>
#include <future>
#include <set>
#include <unistd.h>

#include "common/backoff.hpp"
#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/money.hpp"
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

routing::RoutingContext routing_context(const db::DispatchJob& job) {
  routing::RoutingContext ctx;
  ctx.job_id = job.id;
  ctx.team_id = job.team_id;
  ctx.task_type = job.task_type;
  ctx.domain = job.domain;
  ctx.expertise = job.expertise;
  ctx.eligible = job.eligible_vendors;
  ctx.redundancy = job.redundancy;
  return ctx;
}

}  // namespace

std::chrono::milliseconds retry_backoff(int attempt, std::chrono::milliseconds initial, std::chrono::milliseconds max,
                                        std::optional<std::chrono::milliseconds> retry_after, std::mt19937_64& rng) {
  return std::max(common::full_jitter_backoff(attempt, initial, max, rng),
                  retry_after.value_or(std::chrono::milliseconds(0)));
}
// ---- VendorBook ---------------------------------------------------------------------------------

VendorBook::VendorBook(const vendors::VendorSet& vendors, const std::vector<config::VendorConfig>& configs)
    : vendors_(vendors), configs_(configs) {}

std::vector<routing::VendorState> VendorBook::states() const {
  std::vector<routing::VendorState> states;
  for (const auto& adapter : vendors_.all()) {
    routing::VendorState state;
    state.id = adapter->id();
    state.capabilities = adapter->capabilities();
    for (const auto& c : configs_) {
      if (c.id != state.id) continue;
      // Already validated by the adapter's factory at start-up.
      state.enabled = c.settings.value("enabled", true);
      state.weight = c.settings.value("weight", 1.0);
    }
    states.push_back(std::move(state));
  }
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  for (auto& s : states)
    if (auto it = health_.find(s.id); it != health_.end()) s.healthy = it->second.resting_until <= now;
  return states;
}

std::optional<std::int64_t> VendorBook::monthly_cap(const std::string& vendor_id) const {
  for (const auto& c : configs_) {
    if (c.id != vendor_id) continue;
    // Already validated by the adapter's factory at start-up.
    const auto cap = c.settings.value("monthly_spend_cap_usd", std::string());
    if (!cap.empty()) return common::parse_usd_micros(cap);
  }
  return std::nullopt;
}

void VendorBook::record_success(const std::string& vendor_id) {
  std::lock_guard lock(mutex_);
  health_[vendor_id] = Health{};
}

void VendorBook::record_failure(const std::string& vendor_id) {
  std::lock_guard lock(mutex_);
  auto& h = health_[vendor_id];
  // Five whole batches failing in a row rests the vendor for ten seconds: new plans go elsewhere,
  // work already assigned to it keeps retrying with backoff.
  if (++h.consecutive_failures >= 5) {
    h.resting_until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    h.consecutive_failures = 0;
    log::warn("vendor failing; routing new work elsewhere for 10s", {{"vendor", vendor_id}});
  }
}

// ---- Dispatch -----------------------------------------------------------------------------------

Dispatch::Dispatch(db::ConnectionPool& pool, const vendors::VendorSet& vendors, routing::RoutingPolicy& policy,
                   const std::vector<config::VendorConfig>& configs, const config::QualityConfig& quality)
    : pool_(pool), vendors_(vendors), policy_(policy), book_(vendors, configs), quality_(quality) {}

std::int64_t Dispatch::quote(const db::DispatchJob& job, const std::string& vendor_id) const {
  const auto* adapter = vendors_.find(vendor_id);
  return adapter ? adapter->quote_micros(unit_for_quote(job)) : 0;
}

std::vector<db::PlannedItem> Dispatch::plan(const db::DispatchJob& job, const std::vector<std::string>& item_ids) {
  const auto states = book_.states();
  const auto choices = policy_.plan(routing_context(job), item_ids.size(), states);
  std::map<std::string, std::int64_t> quotes;
  std::vector<db::PlannedItem> planned;
  planned.reserve(item_ids.size());
  for (std::size_t i = 0; i < item_ids.size(); ++i) {
    db::PlannedItem item{item_ids[i], {}};
    for (const auto& vendor : choices[i]) {
      auto [it, fresh] = quotes.try_emplace(vendor, 0);
      if (fresh) it->second = quote(job, vendor);
      item.vendors.emplace_back(vendor, it->second);
    }
    planned.push_back(std::move(item));
  }
  return planned;
}

db::DispatchRules Dispatch::rules() {
  db::DispatchRules rules;
  rules.reroute = [this](const db::DispatchJob& job, const std::vector<std::string>& used)
      -> std::optional<std::pair<std::string, std::int64_t>> {
    auto vendor = policy_.reroute(routing_context(job), used, book_.states());
    if (!vendor) return std::nullopt;
    return std::make_pair(*vendor, quote(job, *vendor));
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

Engine::Engine(Dispatch& dispatch, const config::DispatchConfig& options, WebhookDelivery* webhooks)
    : dispatch_(dispatch), options_(options), webhooks_(webhooks) {
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
        return db::plan_next_chunk(c, options_.plan_chunk_items, [&](const db::DispatchJob& job, const auto& ids) {
          return dispatch_.plan(job, ids);
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
  while (!stopping_) {
    bool sent = false;
    guarded("dispatch", [&] {
      auto batch = with_retry(dispatch_.pool(), [&](auto& c) {
        return db::claim_batch(c, adapter->id(), batch_size, claim, rules);
      });
      if (!batch.units.empty()) {
        send_batch(*adapter, batch, rng);
        sent = true;
      }
    });
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
  try {
    result = adapter.submit(units);
  } catch (const vendors::VendorError& e) {
    for (const auto& u : units)
      result.failed.push_back({u.assignment_id, e.error_class(), e.what(), e.retry_after()});
  } catch (const std::exception& e) {
    // Not a classified vendor error: assume nothing is known and retry the batch as it was.
    for (const auto& u : units) result.failed.push_back({u.assignment_id, vendors::ErrorClass::retryable, e.what(), {}});
  }
  if (result.submitted.empty() && !result.failed.empty())
    dispatch_.book().record_failure(adapter.id());
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
          auto results = adapter->poll(refs);
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
        std::set<std::string> jobs;
        for (const auto& t : targets) jobs.insert(t.job_id);
        // Vendors that cancel in bulk (Surge projects) do it per job; their units' states are then
        // read back. Others cancel unit by unit.
        bool bulk = true;
        for (const auto& job : jobs)
          if (!adapter->cancel_job(job)) bulk = false;
        if (bulk) {
          std::vector<vendors::UnitRef> refs;
          for (const auto& t : targets) refs.push_back(t.ref);
          std::set<std::string> gone;
          for (const auto& r : adapter->poll(refs))
            if (r.status == vendors::UnitStatus::canceled) gone.insert(r.assignment_id);
          for (const auto& t : targets) (gone.count(t.ref.assignment_id) ? canceled : keep).push_back(t.ref.assignment_id);
        } else {
          for (const auto& t : targets) {
            try {
              auto outcome = adapter->cancel(t.ref);
              if (outcome == vendors::CancelOutcome::canceled || outcome == vendors::CancelOutcome::not_found)
                canceled.push_back(t.ref.assignment_id);
              else
                keep.push_back(t.ref.assignment_id);
            } catch (const vendors::VendorError&) {
              // Asked again when the claim runs out.
            }
          }
        }
        with_retry(dispatch_.pool(), [&](auto& c) {
          db::record_cancel_outcomes(c, canceled, keep);
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
      while (with_retry(pool, [](auto& c) { return db::roll_up_quality(c, kRollupBatch); }) >= kRollupBatch) {
      }
    });
    if (!pause(options_.maintenance_interval)) return;
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
