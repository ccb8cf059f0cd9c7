#pragma once
// What the routing policy reads and writes in PostgreSQL (schema/0005_routing.sql): admin
// overrides of vendors, the facts a decision needs (outstanding units, spend, discounted gold
// evidence, the share window, deficit counters), and the decision log.
//
// Snapshot and save run inside the planning transaction (dispatch_store), so the counters and the
// window move with the assignments they describe; nothing above db/ sees pqxx.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/connection>
#include <pqxx/transaction>

namespace labelbroker::db {

// ---- admin overrides ---------------------------------------------------------------------------

struct VendorSetting {
  std::optional<bool> enabled;   // nullopt: as configured
  std::optional<double> weight;
};

std::map<std::string, VendorSetting> load_vendor_settings(pqxx::connection& c);
// Changes to vendor settings and to a team's deny list are admin changes, audited:
// db/admin_store.hpp (update_vendor_override, update_team).

// ---- decision facts ----------------------------------------------------------------------------

struct RoutingSnapshot {
  struct Vendor {
    std::int64_t outstanding = 0;           // units routed to it and not finished, all jobs
    std::int64_t monthly_spend_micros = 0;  // held + spent this UTC month
    double gold_correct = 0;                // discounted gold evidence for the scope
    double gold_n = 0;
    double evidence_age_hours = 0;          // since the evidence last changed
    std::int64_t window_judgments = 0;      // in the scope's domain, in the sliding window
    double counter = 0;                     // the scope's deficit counter
  };
  std::map<std::string, Vendor> vendors;  // by vendor id; absent vendors have all zeros
  std::string team_name;
  std::int64_t team_monthly_spend_micros = 0;
  std::optional<std::int64_t> team_monthly_cap_micros;
  std::vector<std::string> team_denied_vendors;
};

struct SnapshotRequest {
  std::int64_t team_id = 0;
  std::string domain;
  std::string task_type;
  std::chrono::hours window{24};
  // Takes the scope's advisory lock (for the rest of the transaction) before reading the
  // counters, so two planners of one scope continue one sequence instead of both starting from
  // the same counters.
  bool lock_scope = true;
};

std::string routing_scope(const std::string& domain, const std::string& task_type);

RoutingSnapshot load_routing_snapshot(pqxx::work& tx, const SnapshotRequest& request);
// The same in a transaction of its own, without the scope's lock (for looking, not planning).
RoutingSnapshot read_routing_snapshot(pqxx::connection& c, SnapshotRequest request);

// What a decision changes: the scope's counters (by vendor) and judgments routed per vendor
// (added to the current hour of the domain's window), plus its log entry.
struct RoutingWrite {
  std::string job_id;
  std::string kind = "plan";  // plan | reroute | rebalance
  int items = 0;
  std::string scope;
  std::string domain;
  std::map<std::string, double> counters;           // empty: unchanged
  std::map<std::string, std::int64_t> judgments;    // by vendor
  nlohmann::json decision;                          // null: not logged
};
void save_routing(pqxx::work& tx, const RoutingWrite& write);

// Folds the gold outcomes of a quality roll-up into vendor_evidence: per (vendor, domain,
// task type) `correct` of `n` new gold answers, discounted as routing::DiscountedEvidence does.
struct GoldOutcome {
  std::string vendor_id, domain, task_type;
  double correct = 0, n = 0;
};
void add_gold_evidence(pqxx::work& tx, const std::vector<GoldOutcome>& outcomes, double discount);

// ---- decision log ------------------------------------------------------------------------------

struct LoggedDecision {
  std::int64_t id = 0;
  std::string kind;
  int items = 0;
  nlohmann::json decision;
  std::string created_at;  // RFC 3339
};

struct DecisionPage {
  bool job_found = false;
  std::vector<LoggedDecision> decisions;  // newest first
  std::optional<std::int64_t> next_before;  // cursor: pass as `before` for the next page
  std::int64_t total = 0;              // the job's decisions, all pages
  std::int64_t cap_unsatisfiable = 0;  // of which routed to a lone eligible vendor over the cap
};
// The team's job's decisions with id < before (all when nullopt), newest first.
DecisionPage list_routing_decisions(pqxx::connection& c, std::int64_t team_id, const std::string& job_id,
                                    std::optional<std::int64_t> before, int limit);

}  // namespace labelbroker::db
