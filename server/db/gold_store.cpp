#include "db/gold_store.hpp"

#include <tuple>

#include <pqxx/pqxx>
#include <pqxx/stream_to>

namespace labelbroker::db {
namespace {

using nlohmann::json;

// The columns read_record() expects, in order; created_at as integer microseconds since the
// epoch (exact, like the job store's timestamps).
const char* const kGoldSetColumns =
    "id::text, name, task_type, labels::text, item_count, (extract(epoch FROM created_at) * 1000000)::bigint";

GoldSetRecord read_record(const pqxx::row& r) {
  GoldSetRecord set;
  set.id = r[0].as<std::string>();
  set.name = r[1].as<std::string>();
  set.task_type = r[2].as<std::string>();
  set.labels = json::parse(r[3].c_str()).get<std::vector<std::string>>();
  set.item_count = r[4].as<std::int64_t>();
  set.created_at =
      TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::microseconds(r[5].as<std::int64_t>())));
  return set;
}

}  // namespace

std::optional<GoldSetRecord> create_gold_set(pqxx::connection& c, const NewGoldSet& set,
                                             const std::vector<GoldSetItemRef>& items) {
  pqxx::work tx(c);
  // Like job uploads: the COPY is bounded by the request's body limit, not the pool's
  // statement_timeout (SET LOCAL: only until this transaction ends).
  tx.exec0("SET LOCAL statement_timeout = 0");
  // ON CONFLICT on UNIQUE (team_id, name): a name already taken inserts nothing, so the caller
  // can answer 409 without an error rolling the transaction back.
  auto inserted = tx.exec_params(
      std::string("INSERT INTO gold_sets (team_id, name, task_type, labels, item_count) "
                  "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (team_id, name) DO NOTHING RETURNING ") +
          kGoldSetColumns,
      set.team_id, set.name, set.task_type, json(set.labels).dump(), static_cast<std::int64_t>(items.size()));
  if (inserted.empty()) return std::nullopt;
  GoldSetRecord record = read_record(inserted[0]);
  pqxx::stream_to stream(tx, "gold_set_items", std::vector<std::string>{"gold_set_id", "item_id", "data", "answer"});
  std::string data;
  for (const auto& item : items) {
    data = item.data->dump();
    stream << std::tie(record.id, *item.id, data, *item.answer);
  }
  stream.complete();
  tx.commit();
  return record;
}

std::vector<GoldSetRecord> list_gold_sets(pqxx::connection& c, std::int64_t team_id) {
  pqxx::nontransaction tx(c);
  std::vector<GoldSetRecord> out;
  for (const auto& r : tx.exec_params(std::string("SELECT ") + kGoldSetColumns +
                                          " FROM gold_sets WHERE team_id = $1 ORDER BY created_at DESC, id DESC",
                                      team_id))
    out.push_back(read_record(r));
  return out;
}

std::optional<GoldSetRecord> load_gold_set(pqxx::connection& c, std::int64_t team_id, const std::string& id) {
  pqxx::nontransaction tx(c);
  auto rows = tx.exec_params(
      std::string("SELECT ") + kGoldSetColumns + " FROM gold_sets WHERE id = $1::uuid AND team_id = $2", id, team_id);
  if (rows.empty()) return std::nullopt;
  return read_record(rows[0]);
}

}  // namespace labelbroker::db
