#pragma once
// The dispatch side of jobs in PostgreSQL (schema/0002): planning assignments, claiming them for
// sending, recording what vendors did, cancel, deadlines, job completion. Every function is one
// transaction (or one statement), so a process killed between two calls leaves a consistent state
// that any other process can continue from.
//
// Claims use SELECT ... FOR UPDATE SKIP LOCKED plus a lease (lease_expires_at): rows a crashed
// process held become claimable again when the lease runs out, and are then re-sent as the same
// batch under the same assignment ids, which the vendors treat idempotently.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/connection>

#include "db/routing_store.hpp"
#include "vendors/adapter.hpp"

namespace labelbroker::db {

// The immutable part of a job that dispatch needs (cached by the engine).
struct DispatchJob {
  std::string id;
  std::int64_t team_id = 0;
  std::string name;
  std::string status;
  vendors::TaskType task_type = vendors::TaskType::classification;
  std::string domain;
  vendors::Expertise expertise = vendors::Expertise::general;
  std::string instructions;
  std::vector<std::string> labels;
  int redundancy = 1;
  std::vector<std::string> eligible_vendors;
  std::chrono::system_clock::time_point deadline;
  std::vector<std::string> allow_vendors;  // the job's own lists, as submitted
  std::vector<std::string> deny_vendors;
  std::optional<double> min_vendor_accuracy;
  std::string optimize = "balanced";
};

// ---- planning ---------------------------------------------------------------------------------

// One unit of a plan: this item, judged by these vendors (with their quotes).
struct PlannedItem {
  std::string item_id;
  std::vector<std::pair<std::string, std::int64_t>> vendors;  // vendor id, quote in micro-dollars
};

// A chunk's plan and what it changes in routing's state (counters, window, decision log).
struct PlannedChunk {
  std::vector<PlannedItem> items;
  RoutingWrite routing;  // job_id, scope, domain and judgments are filled in by plan_next_chunk
  // Set: nothing is planned now (no vendor can take the items for the moment); the job's planning
  // resumes after this long, and the decision is still logged.
  std::optional<std::chrono::milliseconds> wait;
};

// Chooses vendors for a chunk of items from the routing facts of the job's scope; called inside
// the planning transaction, which holds the scope's lock.
using PlanChunkFn = std::function<PlannedChunk(const DispatchJob& job, const std::vector<std::string>& item_ids,
                                               const RoutingSnapshot& facts)>;

struct PlanOptions {
  std::size_t chunk = 1000;        // items per transaction
  std::chrono::hours window{24};   // routing's share window
  // A job gets more of its items planned only while fewer than this many of its units wait unsent,
  // so routing decides with what it has learnt since (evidence, shares, breakers) instead of
  // fixing a whole job's vendors at intake.
  std::size_t plan_ahead = 5000;
};

// Claims one queued or running job with unplanned items and room to plan ahead (SKIP LOCKED on the
// job row), reads the routing facts of its scope, asks `plan` about its next `chunk` items and
// inserts their assignments, the routing counters, window and decision in the same transaction,
// advancing the job's plan cursor. A queued job becomes running. Returns false when there was
// nothing to plan.
bool plan_next_chunk(pqxx::connection& c, const PlanOptions& options, const PlanChunkFn& plan);

// ---- sending ----------------------------------------------------------------------------------

struct ClaimedUnit {
  vendors::WorkUnit unit;
  int attempts = 0;  // sends of this unit, including this one
};

struct ClaimedBatch {
  std::string batch_id;
  std::string vendor_id;
  std::vector<ClaimedUnit> units;
};

struct SendFailure {
  std::string assignment_id;
  vendors::ErrorClass error_class = vendors::ErrorClass::retryable;
  std::string message;
  // Retry at this time; nullopt: give up on this vendor for the unit (move it elsewhere).
  std::optional<std::chrono::system_clock::time_point> retry_at;
  // With retry_at unset: if no other vendor can take the unit, retry it here at this time instead
  // of ending its item (the vendor is only out of capacity for now).
  std::optional<std::chrono::system_clock::time_point> wait_at;
};

// Domain decisions the store needs inside its transactions, supplied by the caller so that
// choosing a vendor and aggregating stay out of the storage layer (and happen atomically with the
// state change they cause: no crash window leaves an item with nothing in flight).
struct ItemLabel {
  std::string label;
  double confidence = 0;
  std::string method;
};
// One answer to a real item, as a job's end relabelling sees it.
struct JobJudgment {
  std::string item_id;
  std::string vendor_id;
  std::string answer;
};
struct RelabeledItem {
  std::string item_id;
  ItemLabel label;
};
// A vendor's estimated accuracy on one job, over `judgments` answers.
struct VendorEstimate {
  std::string vendor_id;
  double accuracy = 0;
  std::int64_t judgments = 0;
};
struct JobRelabel {
  std::vector<RelabeledItem> items;  // only items whose label, confidence or method changes
  std::vector<VendorEstimate> vendors;
};

// Where a moved or failed unit's item goes instead.
struct RerouteChoice {
  std::string vendor_id;
  std::int64_t quote_micros = 0;
  nlohmann::json decision;  // logged as the job's 'reroute' decision; null: not logged
};

struct DispatchRules {
  // Another vendor for an item of `job`, not one of `used`. nullopt: none left.
  std::function<std::optional<RerouteChoice>(const DispatchJob& job, const std::vector<std::string>& used)> reroute;
  // The item's label from its answers; nullopt when there are none.
  std::function<std::optional<ItemLabel>(const DispatchJob& job, const std::vector<std::string>& answers)> aggregate;
  // Labels a whole job again from all its judgments when it ends (Dawid-Skene); unset: the
  // per-item labels stand.
  std::function<JobRelabel(const DispatchJob& job, const std::vector<JobJudgment>& judgments)> relabel;
};

// Records a send's outcome for the units `owner` still holds: submitted ones get their vendor task
// id; retryable failures go back to the queue with their batch; the rest are marked failed and
// re-routed to another vendor in the same transaction. A unit whose result already arrived (fast
// callback) stays completed. Returns how many units were moved to another vendor.
std::size_t record_send(pqxx::connection& c, const std::string& owner,
                        const std::vector<vendors::SubmittedUnit>& submitted,
                        const std::vector<SendFailure>& failures, const DispatchRules& rules);

// Makes units whose lease expired (their process died or stalled) claimable again, as the same
// batch. Returns how many.
std::size_t release_expired_leases(pqxx::connection& c);

struct ClaimOptions {
  std::string owner;  // this process's claim token
  std::chrono::milliseconds lease{60000};
  // Gold units mixed into a new batch per real unit of a job that has gold (at least one).
  double gold_rate = 0.10;
  // The vendor's monthly spend cap (config); nullopt: none.
  std::optional<std::int64_t> vendor_monthly_budget_micros;
};

// Claims up to `max_units` due units of one vendor for `options.owner` until now + lease. A batch
// that was sent before (retry, or taken over from a crashed process) is claimed whole and first,
// so it is re-sent exactly as it was first sent. A new batch holds each unit's quote in the
// ledger first (job, team-month and vendor-month budgets): units over the job's or team's budget
// are paused, units over the vendor's cap move to another vendor (`rules.reroute`). Gold copies
// join a new batch at `gold_rate`. Empty batch: nothing to send.
ClaimedBatch claim_batch(pqxx::connection& c, const std::string& vendor_id, std::size_t max_units,
                         const ClaimOptions& options, const DispatchRules& rules);

// ---- results ----------------------------------------------------------------------------------

// Submitted units of a vendor with no result after `older_than`, not polled within `older_than`
// either; marks them polled now so other processes do not ask about the same ones.
std::vector<vendors::UnitRef> claim_units_to_poll(pqxx::connection& c, const std::string& vendor_id,
                                                  std::chrono::milliseconds older_than, std::size_t limit);

struct IngestSummary {
  std::size_t recorded = 0;  // results that changed a unit
  std::size_t ignored = 0;   // repeats, unknown units, units already finished, not yet done
};

// Records completed (and vendor-failed) units of one vendor idempotently, re-routes units the
// vendor gave up on, and aggregates every item that has no open unit left. One transaction: when
// this returns, the results are durable.
IngestSummary record_results(pqxx::connection& c, const std::string& vendor_id,
                             const std::vector<vendors::UnitResult>& results, const DispatchRules& rules);

// The same for several callbacks at once (group commit): one transaction, one summary per group.
struct ResultGroup {
  std::string vendor_id;
  std::vector<vendors::UnitResult> results;
};
std::vector<IngestSummary> record_results(pqxx::connection& c, const std::vector<ResultGroup>& groups,
                                          const DispatchRules& rules);

// ---- cancel, deadlines, completion -------------------------------------------------------------

enum class CancelStatus { canceled, not_found, already_finished };
struct CancelResult {
  CancelStatus status = CancelStatus::not_found;
  std::string job_status;  // status after the call
};
// Cancels a team's job: units not yet sent are canceled at once; sent ones are flagged for the
// canceller to cancel at their vendor; results already in are kept. A job of another team is
// not_found (never revealed).
CancelResult cancel_job(pqxx::connection& c, std::int64_t team_id, const std::string& job_id,
                        const DispatchRules& rules);

struct CancelTarget {
  std::string job_id;
  vendors::UnitRef ref;
  bool move = false;  // the rebalancer's: only this unit, its job goes on
};
// Submitted units of one vendor flagged for cancel, claimed until now + retry_after (if this
// process dies, they are asked about again).
std::vector<CancelTarget> claim_units_to_cancel(pqxx::connection& c, const std::string& vendor_id,
                                                std::size_t limit, std::chrono::milliseconds retry_after);
// The vendor's answers: `canceled` units end canceled; `keep` units are being worked (or cannot be
// canceled) and are never asked about again; their results will still be recorded. Canceled units
// the rebalancer moved (move_reason) have their items re-routed to another vendor, in the same
// transaction: only once the vendor confirmed it will not do the work.
void record_cancel_outcomes(pqxx::connection& c, const std::vector<std::string>& canceled,
                            const std::vector<std::string>& keep, const DispatchRules& rules);

// ---- rebalancing ------------------------------------------------------------------------------

// Move a vendor's unstarted work elsewhere: all of it, or one job's, or one domain's.
struct MoveOrder {
  std::string vendor_id;
  std::optional<std::string> job_id;
  std::optional<std::string> domain;
  std::string reason;  // "breaker_open", "drained", ... recorded on the units
  std::size_t max_units = static_cast<std::size_t>(-1);  // at most this many of this order
};
struct MoveResult {
  std::size_t moved = 0;             // never-sent units given to other vendors now
  std::size_t cancel_requested = 0;  // sent units the canceller asks the vendor to cancel first
};
// One rebalancing pass over running jobs, at most `max_units` units. Never-sent units move now
// (failed with error_class 'moved', their items re-routed in this transaction, the window count
// given back); sent ones are flagged for cancel with the reason and re-routed when the vendor
// confirms (record_cancel_outcomes). Each order of a job that moved something is logged as a
// 'rebalance' decision of that job. Units sent but not acknowledged (a retry pending) stay: they
// may exist at the vendor, and moving them could have the item judged and billed twice. nullopt
// when another process holds the rebalancer's lock (one active rebalancer across processes).
std::optional<MoveResult> rebalance_units(pqxx::connection& c, const std::vector<MoveOrder>& orders,
                                          std::size_t max_units, const DispatchRules& rules);

// Running jobs with unstarted units (queued never sent, or submitted), oldest first: what the
// rebalancer looks at.
std::vector<DispatchJob> jobs_with_unstarted_units(pqxx::connection& c, std::size_t limit);

// Jobs past their deadline end now: unsent units are canceled, sent ones flagged for the
// canceller, open items aggregated from the judgments they have; the job ends `completed` when at
// least one item got a label, else `failed` (end_reason "deadline"). Returns how many jobs.
std::size_t expire_deadlines(pqxx::connection& c, const DispatchRules& rules);

// Ends running, fully planned jobs with no open item: completed (some item labeled) or failed
// (none), writing the job's webhook event to the outbox in the same transaction. Every ending
// (also cancel and deadline) relabels the job with `rules.relabel` first and records the
// vendors' estimated accuracies. Returns how many.
std::size_t finish_jobs(pqxx::connection& c, const DispatchRules& rules);

// ---- budgets ----------------------------------------------------------------------------------

// Applies pending settle and release deltas to the budget accounts (see schema/0004). Returns how
// many were applied.
std::size_t apply_ledger_deltas(pqxx::connection& c, std::size_t max_rows);

// Running jobs with units paused by a spent budget become budget_exhausted (with the reason, and
// their webhook event): every unit not yet sent is paused, planning stops. Returns how many.
std::size_t mark_budget_exhausted(pqxx::connection& c);

enum class BudgetChange { changed, resumed, not_found, finished };
struct BudgetChangeResult {
  BudgetChange change = BudgetChange::not_found;
  std::string job_status;  // status after the call
};
// Sets a team's job budget. A budget_exhausted job whose new budget leaves room resumes: it runs
// again and its paused units are queued. A finished job's budget cannot change.
BudgetChangeResult set_job_budget(pqxx::connection& c, std::int64_t team_id, const std::string& job_id,
                                  std::int64_t budget_micros);

}  // namespace labelbroker::db
