#pragma once
// Quality rollups in PostgreSQL (schema/0003): draining the events that dispatch transactions
// append into hourly totals (the history) and cumulative totals (what the views read), and
// reading a window's totals for the scores and concentration views.
//
// Reads never scan judgments nor the hours of a window: the cumulative tables hold, per key and
// hour with events, the running totals up to that hour, at every level of detail (each
// combination of domain, task type and expertise, or all of them), so a window with any filters
// is two index probes per vendor, per vendor pair and label, and per vendor for the team's own
// volumes, however long the window and however many domains there are. Sums are integers
// (Dawid-Skene's correct judgments in millionths): the same data always reads the same.
//
// Functions take a connection the caller leases for the call; they throw pqxx exceptions on
// database errors.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/connection>

#include "quality/scores.hpp"

namespace labelbroker::db {

// Moves up to `max_events` quality and agreement events each into the hourly and cumulative
// rollups, in one transaction. One process rolls up at a time (advisory lock); others return 0 at
// once. Events for an hour that is already rolled up (late ones) are added to that hour and to
// every later running total of their keys. Returns how many events were rolled up.
// Also folds the events' gold answers into the routing policy's discounted evidence
// (vendor_evidence), forgetting at `evidence_discount` per answer.
std::size_t roll_up_quality(pqxx::connection& c, std::size_t max_events, double evidence_discount = 0.98);

struct RollupFilter {
  std::int64_t team_id = 0;         // whose volumes and spend
  std::optional<int> window_hours;  // the current hour and the ones before it; nullopt: all time
  std::optional<std::string> domain, task_type, expertise;
};

struct RollupTotals {
  std::vector<quality::VendorTotals> vendors;  // only vendors with any event in the window, any order
  std::vector<quality::PairLabelTotals> pairs;
};
RollupTotals load_rollups(pqxx::connection& c, const RollupFilter& filter);

// The team's real answers per domain and vendor in the window (task type and expertise filters
// apply; the domain filter does not). Ordered by domain, then vendor.
struct DomainVolume {
  std::string domain;
  std::string vendor_id;
  std::int64_t items = 0;
};
std::vector<DomainVolume> load_domain_volumes(pqxx::connection& c, const RollupFilter& filter);

// The team's real answers per domain, time bucket and vendor in the window (task type and
// expertise filters apply), for share-over-time charts: hourly buckets, or daily ones when `daily`
// (then at most the last 90 days, also for an all-time window). Ordered by domain, bucket, vendor.
struct ShareBucket {
  std::string domain;
  std::string start;  // RFC 3339, the bucket's first hour
  std::string vendor_id;
  std::int64_t items = 0;
};
std::vector<ShareBucket> load_share_series(pqxx::connection& c, const RollupFilter& filter, bool daily);

// What a dashboard shows of a team beyond the scores: its jobs queued or running, and what it was
// charged per vendor this UTC month (real and gold answers).
struct TeamActivity {
  std::int64_t jobs_in_flight = 0;
  std::map<std::string, std::int64_t> month_spend_micros;
};
TeamActivity load_team_activity(pqxx::connection& c, std::int64_t team_id);

// Whether any rollup has this domain, and (for error messages) every domain that has one, sorted.
bool rollups_have_domain(pqxx::connection& c, const std::string& domain);
std::vector<std::string> rollup_domains(pqxx::connection& c);

}  // namespace labelbroker::db
