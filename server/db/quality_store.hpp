#pragma once
// Quality rollups in PostgreSQL (schema/0003): draining the events that dispatch transactions
// append into hourly totals, and reading those totals for the scores and concentration views.
// Reads never scan judgments: they sum at most (hours in the window x vendors x kinds) rows.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/connection>

#include "quality/scores.hpp"

namespace labelbroker::db {

// Moves up to `max_events` quality and agreement events each into the hourly rollups, in one
// transaction. One process rolls up at a time (advisory lock); others return 0 at once.
// Returns how many events were rolled up.
std::size_t roll_up_quality(pqxx::connection& c, std::size_t max_events);

struct RollupFilter {
  std::int64_t team_id = 0;            // whose volumes and spend
  std::optional<int> window_hours;     // the current hour and the ones before it; nullopt: all time
  std::optional<std::string> domain, task_type, expertise;
};

struct RollupTotals {
  std::vector<quality::VendorTotals> vendors;  // only vendors with any row, any order
  std::vector<quality::PairLabelTotals> pairs;
};
RollupTotals load_rollups(pqxx::connection& c, const RollupFilter& filter);

// The team's real answers per domain and vendor in the window (task type and expertise filters
// apply; the domain filter does not).
struct DomainVolume {
  std::string domain;
  std::string vendor_id;
  std::int64_t items = 0;
};
std::vector<DomainVolume> load_domain_volumes(pqxx::connection& c, const RollupFilter& filter);

// Whether any rollup has this domain, and (for error messages) every domain that has one.
bool rollups_have_domain(pqxx::connection& c, const std::string& domain);
std::vector<std::string> rollup_domains(pqxx::connection& c);

}  // namespace labelbroker::db
