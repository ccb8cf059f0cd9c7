#pragma once
// The broker's background work, and the shared rules that HTTP handlers use too.
//
// Dispatch holds the decisions (which vendor, which label) and applies them through the stores in
// db/: planning, re-routing, ingesting results, cancel. Callback and cancel handlers call it
// directly; the Engine's threads call it in loops:
//   planner      creates assignments for queued/running jobs, a chunk per transaction;
//   dispatchers  per vendor: claim a batch, submit it through the adapter, record the outcome;
//   poller       asks vendors about units whose callback has not come;
//   canceller    cancels flagged units at their vendors;
//   maintenance  takes over expired leases, ends jobs at their deadline, ends finished jobs;
//   webhooks     delivers job events from the outbox.
// Every step is claimed in PostgreSQL, so several broker processes share the work and a killed one
// loses nothing: its leases expire and another process re-sends its batches, which the vendors
// treat idempotently (same assignment ids, same batches).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "db/dispatch_store.hpp"
#include "db/pool.hpp"
#include "routing/policy.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::jobs {

class WebhookDelivery;

// What routing needs to know about the configured vendors now: configuration (enabled, weight)
// plus a simple health signal (a vendor whose whole batches keep failing rests for a while). The
// routing issue replaces the health part with real circuit breakers.
class VendorBook {
 public:
  VendorBook(const vendors::VendorSet& vendors, const std::vector<config::VendorConfig>& configs);
  std::vector<routing::VendorState> states() const;
  // The vendor's "monthly_spend_cap_usd" in micro-dollars; nullopt: none.
  std::optional<std::int64_t> monthly_cap(const std::string& vendor_id) const;
  void record_success(const std::string& vendor_id);
  void record_failure(const std::string& vendor_id);

 private:
  struct Health {
    int consecutive_failures = 0;
    std::chrono::steady_clock::time_point resting_until{};
  };
  const vendors::VendorSet& vendors_;  // read at each call: tests fill it after construction
  std::vector<config::VendorConfig> configs_;
  mutable std::mutex mutex_;
  std::map<std::string, Health> health_;
};

class Dispatch {
 public:
  ~Dispatch();
  // configs: the `vendors` section, for enabled/weight (may be empty: every vendor enabled, weight 1).
  Dispatch(db::ConnectionPool& pool, const vendors::VendorSet& vendors, routing::RoutingPolicy& policy,
           const std::vector<config::VendorConfig>& configs = {}, const config::QualityConfig& quality = {});

  // The domain decisions the stores apply inside their transactions.
  db::DispatchRules rules();
  std::vector<db::PlannedItem> plan(const db::DispatchJob& job, const std::vector<std::string>& item_ids);

  // Records results of one vendor (callback or poll) and returns once they are committed. Results
  // arriving concurrently are written together, in one transaction (group commit), by a small set
  // of writer threads: a callback costs a share of a commit instead of a whole one, and the answer
  // to every vendor still waits for its own results to be durable. Transient database conflicts
  // are retried; other errors reach every caller of the batch.
  db::IngestSummary ingest(const std::string& vendor_id, const std::vector<vendors::UnitResult>& results);
  db::CancelResult cancel(std::int64_t team_id, const std::string& job_id);
  db::BudgetChangeResult set_budget(std::int64_t team_id, const std::string& job_id, std::int64_t budget_micros);

  db::ConnectionPool& pool() { return pool_; }
  const vendors::VendorSet& vendors() const { return vendors_; }
  VendorBook& book() { return book_; }
  const config::QualityConfig& quality() const { return quality_; }

 private:
  std::int64_t quote(const db::DispatchJob& job, const std::string& vendor_id) const;
  void write_results();

  struct PendingResults;
  db::ConnectionPool& pool_;
  const vendors::VendorSet& vendors_;
  routing::RoutingPolicy& policy_;
  VendorBook book_;
  config::QualityConfig quality_;

  std::mutex ingest_mutex_;
  std::condition_variable ingest_ready_;
  std::deque<PendingResults*> ingest_queue_;
  bool ingest_stopping_ = false;
  std::vector<std::thread> writers_;  // started with the first ingest
};

class Engine {
 public:
  Engine(Dispatch& dispatch, const config::DispatchConfig& options, WebhookDelivery* webhooks = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void start();
  // Stops the loops after their current step; claims in progress finish or expire.
  void stop();
  const std::string& owner() const { return owner_; }

 private:
  void run_planner();
  void run_dispatcher(vendors::VendorAdapter* adapter);
  void run_poller();
  void run_canceller();
  void run_maintenance();
  void run_webhooks();
  void send_batch(vendors::VendorAdapter& adapter, db::ClaimedBatch& batch, std::mt19937_64& rng);
  // Sleeps up to `d`, returning early (false) when stopping.
  bool pause(std::chrono::milliseconds d);
  template <typename Fn>
  bool guarded(const char* step, Fn&& fn);

  Dispatch& dispatch_;
  config::DispatchConfig options_;
  WebhookDelivery* webhooks_;
  std::string owner_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> threads_;
};

// Full-jitter exponential backoff for the n-th failed send (n >= 1), never below the vendor's
// Retry-After. Pure; exposed for tests.
std::chrono::milliseconds retry_backoff(int attempt, std::chrono::milliseconds initial, std::chrono::milliseconds max,
                                        std::optional<std::chrono::milliseconds> retry_after, std::mt19937_64& rng);

}  // namespace labelbroker::jobs
