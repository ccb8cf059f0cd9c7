#pragma once
// A team's reusable gold sets in PostgreSQL (schema/0003): gold_sets and their gold_set_items.
// Parameterised SQL only; every function is one transaction on the caller's connection (a pool
// lease). Every read and write is scoped by team: another team's set is indistinguishable from a
// set that does not exist. Reads return a set's header only: its items and answers are for
// intake to copy into jobs (job_store), never for a response.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/connection>

namespace labelbroker::db {

using TimePoint = std::chrono::system_clock::time_point;

// A gold set as the API creates it (already validated by jobs::parse_gold_set).
struct NewGoldSet {
  std::int64_t team_id = 0;
  std::string name;
  std::string task_type;
  std::vector<std::string> labels;
};

// One item to store, pointing into the caller's parsed request (nothing is copied until COPY).
struct GoldSetItemRef {
  const std::string* id = nullptr;
  const nlohmann::json* data = nullptr;
  const std::string* answer = nullptr;
};

struct GoldSetRecord {
  std::string id;
  std::string name;
  std::string task_type;
  std::vector<std::string> labels;
  std::int64_t item_count = 0;
  TimePoint created_at;
};

// Inserts the set and COPYs its items, in one transaction. nullopt: the team already has a set
// with this name (a concurrent create of the same name waits on the unique index, then gets
// nullopt too); nothing is stored then.
std::optional<GoldSetRecord> create_gold_set(pqxx::connection& c, const NewGoldSet& set,
                                             const std::vector<GoldSetItemRef>& items);

// The team's gold sets, newest first.
std::vector<GoldSetRecord> list_gold_sets(pqxx::connection& c, std::int64_t team_id);

// One of the team's gold sets; nullopt for an unknown id or another team's set. `id` must be a
// UUID (common::is_uuid): anything else fails the ::uuid cast.
std::optional<GoldSetRecord> load_gold_set(pqxx::connection& c, std::int64_t team_id, const std::string& id);

}  // namespace labelbroker::db
