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
//   webhooks     delivers job events from the outbox;
//   rebalancer   moves unstarted work off vendors routing no longer uses;
//   datasets     materialises dataset versions.
// Every step is claimed in PostgreSQL, so several broker processes share the work and a killed one
// loses nothing: its leases expire and another process re-sends its batches, which the vendors
// treat idempotently (same assignment ids, same batches).
#include <array>
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
#include "datasets/file_cache.hpp"
#include "db/admin_store.hpp"
#include "db/dispatch_store.hpp"
#include "db/pool.hpp"
#include "db/routing_store.hpp"
#include "routing/router.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::jobs {

class WebhookDelivery;

// What routing knows about the configured vendors in this process: configuration, admin
// overrides (vendor_settings, refreshed from the database so every process applies a drain), and
// a circuit breaker per vendor fed by this process's sends.
class VendorBook {
 public:
  VendorBook(const vendors::VendorSet& vendors, const std::vector<config::VendorConfig>& configs,
             const config::RoutingConfig& routing = {});

  // Every configured vendor's static and live facts (id, capabilities, enabled, weight, breaker,
  // capacity); the caller adds what the database knows.
  std::vector<routing::VendorFacts> facts() const;
  // The vendor's "monthly_spend_cap_usd" in micro-dollars; nullopt: none.
  std::optional<std::int64_t> monthly_cap(const std::string& vendor_id) const;

  // Breakers. allow_send is asked before each claim; in half_open it lets one probe through,
  // which release_probe gives back when there was nothing to send.
  bool allow_send(const std::string& vendor_id);
  void release_probe(const std::string& vendor_id);
  void record_success(const std::string& vendor_id);
  void record_failure(const std::string& vendor_id, std::optional<std::chrono::milliseconds> retry_after = {});
  // {state, consecutive_failures, window_requests, window_failures, opened_at, reopen_at}
  nlohmann::json describe(const std::string& vendor_id) const;

  // Vendor errors by class, counted where dispatch, polling and cancel see them (for /metrics).
  static constexpr std::size_t kErrorClasses = 5;  // vendors::ErrorClass's values
  void count_error(const std::string& vendor_id, vendors::ErrorClass error_class);
  struct VendorStatus {
    std::string id;
    routing::BreakerState breaker = routing::BreakerState::closed;
    std::array<std::uint64_t, kErrorClasses> errors{};  // indexed by vendors::ErrorClass
  };
  // Every configured vendor, in configuration order, under one lock.
  std::vector<VendorStatus> statuses() const;

  // Admin overrides, as stored; a vendor absent from `settings` is as configured.
  void apply_settings(const std::map<std::string, db::VendorSetting>& settings);
  // The effective (enabled, weight) of a vendor: override, else configuration.
  std::pair<bool, double> effective(const std::string& vendor_id) const;

 private:
  struct Configured {
    bool enabled = true;
    double weight = 1.0;
    std::int64_t max_outstanding = 0;
    std::optional<std::int64_t> monthly_cap;
  };
  Configured configured(const std::string& vendor_id) const;

  const vendors::VendorSet& vendors_;  // read at each call: tests fill it after construction
  std::map<std::string, Configured> configured_;  // the vendors' entries, read once
  routing::BreakerOptions breaker_options_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, routing::CircuitBreaker> breakers_;
  std::map<std::string, std::array<std::uint64_t, kErrorClasses>> errors_;
  std::map<std::string, db::VendorSetting> settings_;
};

class Dispatch {
 public:
  ~Dispatch();
  // configs: the `vendors` section, for enabled/weight (may be empty: every vendor enabled, weight 1).
  Dispatch(db::ConnectionPool& pool, const vendors::VendorSet& vendors, const std::vector<config::VendorConfig>& configs = {},
           const config::QualityConfig& quality = {}, const config::RoutingConfig& routing = {});

  // The domain decisions the stores apply inside their transactions.
  db::DispatchRules rules();
  // Routes a chunk of a job's items with the routing policy, from the facts of its scope.
  db::PlannedChunk plan(const db::DispatchJob& job, const std::vector<std::string>& item_ids,
                        const db::RoutingSnapshot& facts);
  // One rebalancing pass (see Engine): moves unstarted work off vendors the policy would no longer
  // give it to. nullopt when another process is rebalancing.
  std::optional<db::MoveResult> rebalance();
  // PATCH /v1/vendors/{id}: an admin's change of a vendor's enabled flag or weight: stored and audited in one transaction,
  // then applied here (other processes pick it up at their next settings refresh).
  db::VendorOverride set_vendor(const std::string& vendor_id, std::optional<bool> enabled, std::optional<double> weight,
                                const db::AuditContext& audit);
  void refresh_vendor_settings();

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
  const config::RoutingConfig& routing() const { return routing_config_; }
  // The most any vendor may hold of a team's work in a domain (an empty domain: the cap before
  // domain overrides), as the routing policy applies it.
  double share_cap(const std::string& domain, const std::string& team_name) const;

 private:
  std::int64_t quote(const db::DispatchJob& job, const std::string& vendor_id) const;
  // The policy's view of a job and of every vendor for it, from the scope's facts.
  routing::JobFacts job_facts(const db::DispatchJob& job, const db::RoutingSnapshot& facts) const;
  std::vector<routing::VendorFacts> vendor_facts(const db::DispatchJob& job, const db::RoutingSnapshot& facts) const;
  // The last facts seen for a job's scope and team (planning and rebalancing refresh them).
  db::RoutingSnapshot cached_facts(const db::DispatchJob& job) const;
  void remember_facts(const db::DispatchJob& job, const db::RoutingSnapshot& facts);
  std::optional<db::RerouteChoice> reroute(const db::DispatchJob& job, const std::vector<std::string>& used);
  // Each vendor's median time to an answer over the last 24 h (quality rollups), for deadlines.
  void refresh_latencies();
  void write_results();

  struct PendingResults;
  db::ConnectionPool& pool_;
  const vendors::VendorSet& vendors_;
  VendorBook book_;
  config::QualityConfig quality_;
  config::RoutingConfig routing_config_;
  routing::Router router_;

  mutable std::mutex facts_mutex_;
  std::map<std::string, db::RoutingSnapshot> facts_;      // by scope + team
  std::map<std::string, routing::CounterBook> reroute_counters_;  // by scope, this process's
  std::map<std::string, double> median_latency_s_;  // by vendor, last 24 h; refreshed by rebalance()

  std::mutex ingest_mutex_;
  std::condition_variable ingest_ready_;
  std::deque<PendingResults*> ingest_queue_;
  bool ingest_stopping_ = false;
  std::vector<std::thread> writers_;  // started with the first ingest
};

class Engine {
 public:
  // dataset_files: where built dataset versions are also written (may be null).
  Engine(Dispatch& dispatch, const config::DispatchConfig& options, WebhookDelivery* webhooks = nullptr,
         const datasets::FileCache* dataset_files = nullptr);
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
  void run_rebalancer();
  void run_dataset_builder();
  void send_batch(vendors::VendorAdapter& adapter, db::ClaimedBatch& batch, std::mt19937_64& rng);
  // Sleeps up to `d`, returning early (false) when stopping.
  bool pause(std::chrono::milliseconds d);
  template <typename Fn>
  bool guarded(const char* step, Fn&& fn);
  // Runs one call to a vendor, counting a VendorError it throws (which then propagates).
  template <typename Fn>
  auto counting_errors(vendors::VendorAdapter& adapter, Fn&& fn);

  Dispatch& dispatch_;
  config::DispatchConfig options_;
  WebhookDelivery* webhooks_;
  const datasets::FileCache* dataset_files_;
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
