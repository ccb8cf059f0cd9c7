#pragma once
// The cluster-wide numbers /metrics shows, read in one read-only transaction (one snapshot of the
// database) by the metrics refresher, never on a request.
//
// Every query is bounded by an index or a small table: active assignments through their partial
// indexes (one per state), the quality rollups' all-levels key per vendor (two index probes each),
// budget_accounts (one row per job, team-month and vendor-month; no scan of ledger_entries) and
// the small queue of account_deltas not yet applied to them. The
// one that grows with history is the count of jobs by status (jobs, not items).
// Throws pqxx exceptions on database errors.
#include <cstdint>
#include <map>
#include <string>

#include <pqxx/connection>

namespace labelbroker::db {

struct VendorClusterStats {
  std::map<std::string, std::int64_t> assignments;  // by state, non-terminal states only
  std::int64_t spent_micros_month = 0;              // this UTC month, vendor:<id>:<YYYY-MM>
  std::int64_t held_micros_month = 0;
  std::int64_t gold_n = 0;  // all time, all teams (quality rollups)
  std::int64_t gold_correct = 0;
  std::int64_t judgments_24h = 0;  // real answers rolled up in the last 24 hours
};

struct ClusterStats {
  std::map<std::string, std::int64_t> jobs_by_status;  // every status that has jobs
  std::map<std::string, VendorClusterStats> vendors;   // every vendor the database knows of
  std::int64_t team_held_micros_month = 0;             // sum over teams, this UTC month
  std::int64_t team_spent_micros_month = 0;
  std::string month;  // "YYYY-MM", UTC
};

ClusterStats load_cluster_stats(pqxx::connection& c);

}  // namespace labelbroker::db
