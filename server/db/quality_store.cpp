#include "db/quality_store.hpp"

#include <array>
#include <compare>
#include <map>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "db/routing_store.hpp"

namespace labelbroker::db {
namespace {

using json = nlohmann::json;

std::vector<std::int64_t> int_array(const std::string& text) {
  // PostgreSQL array text: {1,2,3}
  std::vector<std::int64_t> out;
  std::string digits;
  for (char ch : text) {
    if ((ch >= '0' && ch <= '9') || ch == '-') {
      digits.push_back(ch);
    } else if (!digits.empty()) {
      out.push_back(std::stoll(digits));
      digits.clear();
    }
  }
  return out;
}

// Runs `sql` as a prepared statement of this connection, defined on first use (pqxx treats a
// repeated identical definition as a no-op): planning the LATERAL probes afresh on every request
// would cost as much as running them.
template <typename Tx, typename... Args>
pqxx::result run_prepared(Tx& tx, const std::string& name, const std::string& sql, Args&&... args) {
  tx.conn().prepare(name, sql);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

// ---- roll-up ------------------------------------------------------------------------------------

// A key's columns in its keys table (vendor_keys, vendor_pair_keys), in table order; nullopt:
// all values of that column.
using Dims = std::vector<std::optional<std::string>>;
using Counts = std::vector<std::int64_t>;

// One running total: a key, and for team_vendor_cumulative the team (0 elsewhere).
struct Cell {
  std::int64_t team_id = 0;
  Dims dims;
  auto operator<=>(const Cell&) const = default;
};
// What a batch adds, per cell and hour ("YYYY-MM-DDTHH:00:00Z", so text order is time order).
using Deltas = std::map<Cell, std::map<std::string, Counts>>;

void add_counts(Counts& to, const Counts& from) {
  if (to.empty()) to.assign(from.size(), 0);
  for (std::size_t i = 0; i < from.size(); ++i) to[i] += from[i];
}

// Adds `counts` to the key at every level of detail: with each combination of the columns at
// `rollable` (domain, task type, expertise) replaced by "all".
void add_at_every_level(Deltas& deltas, std::int64_t team_id, const Dims& dims,
                        const std::array<std::size_t, 3>& rollable, const std::string& hour, const Counts& counts) {
  for (unsigned mask = 0; mask < 8; ++mask) {
    Cell cell{team_id, dims};
    for (unsigned bit = 0; bit < 3; ++bit)
      if (mask & (1u << bit)) cell.dims[rollable[bit]].reset();
    add_counts(deltas[cell][hour], counts);
  }
}

struct KeysTable {
  const char* name;
  std::vector<const char*> columns;  // text columns, in Dims order
};
const KeysTable kVendorKeys{"vendor_keys", {"vendor_id", "domain", "task_type", "expertise"}};
const KeysTable kPairKeys{"vendor_pair_keys", {"vendor_a", "vendor_b", "domain", "task_type", "expertise", "label"}};
constexpr std::array<std::size_t, 3> kVendorRollable = {1, 2, 3};
constexpr std::array<std::size_t, 3> kPairRollable = {2, 3, 4};

std::string key_text(const Dims& dims) {
  json key = json::array();
  for (const auto& d : dims) key.push_back(d ? json(*d) : json(nullptr));
  return key.dump();
}

// The ids of the cells' keys, inserting the keys that are new.
std::map<Dims, int> resolve_keys(pqxx::work& tx, const KeysTable& table, const Deltas& deltas) {
  std::map<std::string, Dims> by_text;
  for (const auto& [cell, hours] : deltas) by_text.emplace(key_text(cell.dims), cell.dims);
  std::map<Dims, int> ids;
  if (by_text.empty()) return ids;
  json keys = json::array();
  for (const auto& [text, dims] : by_text) {
    json k = {{"key", text}};
    for (std::size_t i = 0; i < dims.size(); ++i) k[table.columns[i]] = dims[i] ? json(*dims[i]) : json(nullptr);
    keys.push_back(std::move(k));
  }
  std::string columns, record;
  for (const auto* c : table.columns) {
    columns += std::string(", ") + c;
    record += std::string(", ") + c + " text";
  }
  const std::string sql =
      std::string("WITH k AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS k(key text") + record + ")), " +
      "new AS (INSERT INTO " + table.name + " (key" + columns + ") SELECT key" + columns +
      "  FROM k ORDER BY key ON CONFLICT (key) DO NOTHING RETURNING id, key) "
      "SELECT id, key FROM new UNION ALL SELECT t.id, t.key FROM " +
      table.name + " t JOIN k USING (key)";
  for (const auto& r : run_prepared(tx, std::string("quality_keys_") + table.name, sql, keys.dump()))
    ids.emplace(by_text.at(r[1].as<std::string>()), r[0].as<int>());
  return ids;
}

struct CumulativeTable {
  const char* name;
  bool per_team;                      // team_id is part of the key
  std::vector<const char*> counters;  // bigint running totals, in Counts order
  bool latency;                       // Counts ends with one count per latency bucket
};
const CumulativeTable kVendorCumulative{"vendor_cumulative",
                                        false,
                                        {"judgments", "gold_n", "gold_correct", "cost_micros", "on_time", "sends",
                                         "errors", "ds_n", "ds_correct_micros"},
                                        true};
const CumulativeTable kTeamCumulative{"team_vendor_cumulative", true, {"judgments", "cost_micros"}, false};
const CumulativeTable kPairCumulative{"vendor_pair_cumulative", false, {"a_count", "b_count", "agree"}, false};

// One statement adding a batch to a cumulative table. Each record is a cell's hour with events and
// what the batch adds to the cell's running total at that hour (its deltas at hours <= it, c);
// `until` is the cell's next hour in the batch. Rows that exist at or after the hour (up to
// `until`) gain c; an hour without a row gets one: the previous row (or zero) plus c. Both parts
// see the table as it was before the statement, so each row is written once.
std::string cumulative_sql(const CumulativeTable& t) {
  const std::string team = t.per_team ? "team_id, " : "";
  const auto same_key = [&](const std::string& a) {
    return std::string(t.per_team ? a + ".team_id = d.team_id AND " : "") + a + ".key_id = d.key_id";
  };
  std::string set, columns, values;
  for (std::size_t i = 0; i < t.counters.size(); ++i) {
    const std::string c = t.counters[i], at = "d.c[" + std::to_string(i + 1) + "]";
    set += (i ? ", " : "") + c + " = r." + c + " + " + at;
    columns += ", " + c;
    values += ", coalesce(p." + c + ", 0) + " + at;
  }
  if (t.latency) {
    const std::string buckets = "d.c[" + std::to_string(t.counters.size() + 1) + ":" +
                                std::to_string(t.counters.size() + quality::kLatencyBucketsMs.size()) + "]";
    const auto sum = [&](const std::string& from) {
      return "ARRAY(SELECT coalesce(x, 0) + y FROM unnest(" + from + ".latency_buckets, " + buckets +
             ") WITH ORDINALITY AS u(x, y, i) ORDER BY i)";
    };
    set += ", latency_buckets = " + sum("r");
    columns += ", latency_buckets";
    values += ", " + sum("p");
  }
  return std::string("WITH d AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS d(") +
         (t.per_team ? "team_id bigint, " : "") +
         "key_id integer, hour timestamptz, until timestamptz, c bigint[])), "
         "later AS (UPDATE " + t.name + " r SET " + set + " FROM d WHERE " + same_key("r") +
         "  AND r.hour >= d.hour AND r.hour < coalesce(d.until, 'infinity')) "
         "INSERT INTO " +
         t.name + " (" + team + "key_id, hour" + columns + ") SELECT " + (t.per_team ? "d.team_id, " : "") +
         "d.key_id, d.hour" + values + " FROM d LEFT JOIN LATERAL (SELECT * FROM " + t.name + " p WHERE " +
         same_key("p") + " AND p.hour <= d.hour ORDER BY p.hour DESC LIMIT 1) p ON true " +
         "WHERE p.hour IS DISTINCT FROM d.hour ORDER BY " + (t.per_team ? "d.team_id, " : "") + "d.key_id, d.hour";
}

void add_to_cumulative(pqxx::work& tx, const CumulativeTable& table, const Deltas& deltas,
                       const std::map<Dims, int>& ids) {
  // Records in key order: the roller is alone (advisory lock), but a fixed order costs nothing.
  std::map<std::pair<std::int64_t, int>, const std::map<std::string, Counts>*> cells;
  for (const auto& [cell, hours] : deltas) cells.emplace(std::make_pair(cell.team_id, ids.at(cell.dims)), &hours);
  json records = json::array();
  for (const auto& [key, hours] : cells) {
    Counts running;
    for (auto it = hours->begin(); it != hours->end(); ++it) {
      add_counts(running, it->second);
      const auto next = std::next(it);
      json r = {{"key_id", key.second},
                {"hour", it->first},
                {"until", next == hours->end() ? json(nullptr) : json(next->first)},
                {"c", running}};
      if (table.per_team) r["team_id"] = key.first;
      records.push_back(std::move(r));
    }
  }
  if (!records.empty())
    run_prepared(tx, std::string("quality_add_") + table.name, cumulative_sql(table), records.dump());
}

// ---- reads --------------------------------------------------------------------------------------

// The first hour of the window ($2 hours up to the current one), NULL for all time; as a FROM item
// `w`.
constexpr const char* kWindow =
    "(SELECT date_trunc('hour', now()) - ($2::int - 1) * interval '1 hour' AS start) w ";

// A key's latest running total (`alias`), and its latest before the window (`alias`_s, NULL rows
// when none or all time); a window's totals are the difference.
std::string probes(const std::string& table, const std::string& alias, const std::string& key) {
  return "CROSS JOIN LATERAL (SELECT * FROM " + table + " c WHERE " + key + " ORDER BY c.hour DESC LIMIT 1) " +
         alias + " LEFT JOIN LATERAL (SELECT * FROM " + table + " c WHERE " + key +
         " AND c.hour < w.start ORDER BY c.hour DESC LIMIT 1) " + alias + "_s ON true ";
}

std::string minus(const std::string& alias, const std::string& column) {
  return alias + "." + column + " - coalesce(" + alias + "_s." + column + ", 0)";
}

// Keys of the level the filters ask for ($3 domain, $4 task type, $5 expertise; NULL: all). The
// coalesce terms match the keys tables' level index; the exact test follows.
constexpr const char* kLevel =
    "coalesce(k.domain, '') = coalesce($3::text, '') AND coalesce(k.task_type, '') = coalesce($4::text, '') "
    "AND coalesce(k.expertise, '') = coalesce($5::text, '') AND k.domain IS NOT DISTINCT FROM $3::text "
    "AND k.task_type IS NOT DISTINCT FROM $4::text AND k.expertise IS NOT DISTINCT FROM $5::text ";

}  // namespace

std::size_t roll_up_quality(pqxx::connection& c, std::size_t max_events, double evidence_discount) {
  pqxx::work tx(c);
  if (!tx.exec("SELECT pg_try_advisory_xact_lock(hashtext('labelbroker.quality_rollup'))")[0][0].as<bool>()) return 0;
  auto groups = tx.exec_params(
      "WITH e AS (DELETE FROM quality_events WHERE id IN (SELECT id FROM quality_events ORDER BY id LIMIT $1) "
      "           RETURNING *) "
      "SELECT to_char(date_trunc('hour', at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00Z'), team_id, vendor_id, "
      "  domain, task_type, expertise, sum(judgments), sum(gold_n), sum(gold_correct), sum(cost_micros), "
      "  sum(on_time), sum(sends), sum(errors), sum(ds_n), sum(ds_correct), "
      "  coalesce(array_agg(latency_ms) FILTER (WHERE latency_ms IS NOT NULL), '{}')::text, count(*), "
      "  sum(round(ds_correct * 1000000)::bigint) "
      "FROM e GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6",
      static_cast<long>(max_events));
  std::size_t events = 0;
  json rows = json::array();
  Deltas vendor_deltas, team_deltas;
  std::map<std::array<std::string, 3>, GoldOutcome> gold;  // (domain, task type, vendor)
  for (const auto& g : groups) {
    quality::LatencyHistogram histogram;
    for (auto ms : int_array(g[15].as<std::string>())) histogram.add(static_cast<double>(ms));
    const auto hour = g[0].as<std::string>();
    const auto team_id = g[1].as<std::int64_t>();
    const Dims dims = {g[2].as<std::string>(), g[3].as<std::string>(), g[4].as<std::string>(), g[5].as<std::string>()};
    const auto judgments = g[6].as<std::int64_t>(), cost = g[9].as<std::int64_t>();
    rows.push_back({{"hour", hour},
                    {"team_id", team_id},
                    {"vendor_id", *dims[0]},
                    {"domain", *dims[1]},
                    {"task_type", *dims[2]},
                    {"expertise", *dims[3]},
                    {"judgments", judgments},
                    {"gold_n", g[7].as<std::int64_t>()},
                    {"gold_correct", g[8].as<std::int64_t>()},
                    {"cost", cost},
                    {"on_time", g[10].as<std::int64_t>()},
                    {"sends", g[11].as<std::int64_t>()},
                    {"errors", g[12].as<std::int64_t>()},
                    {"ds_n", g[13].as<std::int64_t>()},
                    {"ds_correct", g[14].as<double>()},
                    {"buckets", histogram.counts()}});
    // In kVendorCumulative's counter order, then the latency buckets.
    Counts counts = {judgments,
                     g[7].as<std::int64_t>(),
                     g[8].as<std::int64_t>(),
                     cost,
                     g[10].as<std::int64_t>(),
                     g[11].as<std::int64_t>(),
                     g[12].as<std::int64_t>(),
                     g[13].as<std::int64_t>(),
                     g[17].as<std::int64_t>()};
    counts.insert(counts.end(), histogram.counts().begin(), histogram.counts().end());
    add_at_every_level(vendor_deltas, 0, dims, kVendorRollable, hour, counts);
    if (const auto gold_n = g[7].as<std::int64_t>(); gold_n > 0) {
      auto& outcome = gold[{*dims[1], *dims[2], *dims[0]}];
      outcome.vendor_id = *dims[0];
      outcome.domain = *dims[1];
      outcome.task_type = *dims[2];
      outcome.n += static_cast<double>(gold_n);
      outcome.correct += static_cast<double>(g[8].as<std::int64_t>());
    }
    add_at_every_level(team_deltas, team_id, dims, kVendorRollable, hour, {judgments, cost});
    events += g[16].as<std::size_t>();
  }
  if (!rows.empty())
    tx.exec_params0(
        "INSERT INTO vendor_hourly AS v (hour, team_id, vendor_id, domain, task_type, expertise, judgments, gold_n, "
        "  gold_correct, cost_micros, on_time, sends, errors, ds_n, ds_correct, latency_buckets) "
        "SELECT x.hour, x.team_id, x.vendor_id, x.domain, x.task_type, x.expertise, x.judgments, x.gold_n, "
        "  x.gold_correct, x.cost, x.on_time, x.sends, x.errors, x.ds_n, x.ds_correct, "
        "  ARRAY(SELECT jsonb_array_elements_text(x.buckets)::bigint) "
        "FROM jsonb_to_recordset($1::jsonb) AS x(hour timestamptz, team_id bigint, vendor_id text, domain text, "
        "  task_type text, expertise text, judgments bigint, gold_n bigint, gold_correct bigint, cost bigint, "
        "  on_time bigint, sends bigint, errors bigint, ds_n bigint, ds_correct double precision, buckets jsonb) "
        "ON CONFLICT (hour, team_id, vendor_id, domain, task_type, expertise) DO UPDATE SET "
        "  judgments = v.judgments + excluded.judgments, gold_n = v.gold_n + excluded.gold_n, "
        "  gold_correct = v.gold_correct + excluded.gold_correct, cost_micros = v.cost_micros + excluded.cost_micros, "
        "  on_time = v.on_time + excluded.on_time, sends = v.sends + excluded.sends, "
        "  errors = v.errors + excluded.errors, ds_n = v.ds_n + excluded.ds_n, "
        "  ds_correct = v.ds_correct + excluded.ds_correct, "
        "  latency_buckets = CASE WHEN cardinality(v.latency_buckets) = 0 THEN excluded.latency_buckets "
        "    ELSE ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0) "
        "               FROM unnest(v.latency_buckets, excluded.latency_buckets) WITH ORDINALITY AS t(a, b, i) "
        "               ORDER BY i) END",
        rows.dump());
  // The pairs' hourly rows are written in SQL; their sums come back for the running totals. Each
  // event counts once in a_count (for label_a), so sum(a) is the number of events.
  auto pairs = tx.exec_params(
      "WITH e AS (DELETE FROM agreement_events WHERE id IN (SELECT id FROM agreement_events ORDER BY id LIMIT $1) "
      "           RETURNING *), "
      "r AS (SELECT date_trunc('hour', at) AS hour, vendor_a, vendor_b, domain, task_type, expertise, label_a AS label, "
      "             1 AS a, 0 AS b, (label_a = label_b)::int AS agree FROM e "
      "      UNION ALL "
      "      SELECT date_trunc('hour', at), vendor_a, vendor_b, domain, task_type, expertise, label_b, 0, 1, 0 FROM e), "
      "g AS (SELECT hour, vendor_a, vendor_b, domain, task_type, expertise, label, sum(a) AS a, sum(b) AS b, "
      "             sum(agree) AS agree "
      "      FROM r GROUP BY 1, 2, 3, 4, 5, 6, 7), "
      "ins AS (INSERT INTO vendor_pair_hourly AS p (hour, vendor_a, vendor_b, domain, task_type, expertise, label, "
      "          a_count, b_count, agree) "
      "        SELECT * FROM g ORDER BY 1, 2, 3, 4, 5, 6, 7 "
      "        ON CONFLICT (hour, vendor_a, vendor_b, domain, task_type, expertise, label) DO UPDATE SET "
      "          a_count = p.a_count + excluded.a_count, b_count = p.b_count + excluded.b_count, "
      "          agree = p.agree + excluded.agree) "
      "SELECT to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00Z'), vendor_a, vendor_b, domain, task_type, "
      "  expertise, label, a, b, agree FROM g",
      static_cast<long>(max_events));
  Deltas pair_deltas;
  for (const auto& p : pairs) {
    const Dims dims = {p[1].as<std::string>(), p[2].as<std::string>(), p[3].as<std::string>(),
                       p[4].as<std::string>(), p[5].as<std::string>(), p[6].as<std::string>()};
    const Counts counts = {p[7].as<std::int64_t>(), p[8].as<std::int64_t>(), p[9].as<std::int64_t>()};
    add_at_every_level(pair_deltas, 0, dims, kPairRollable, p[0].as<std::string>(), counts);
    events += static_cast<std::size_t>(counts[0]);
  }

  // The batch is a JSON parameter, so PostgreSQL cannot see its size and may hash-join it with a
  // whole cumulative table (a full scan per batch); probing the primary keys per record is right
  // for every batch size.
  if (!vendor_deltas.empty() || !pair_deltas.empty())
    tx.exec0("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off");
  if (!vendor_deltas.empty()) {
    // team_deltas has the same keys as vendor_deltas.
    const auto ids = resolve_keys(tx, kVendorKeys, vendor_deltas);
    add_to_cumulative(tx, kVendorCumulative, vendor_deltas, ids);
    add_to_cumulative(tx, kTeamCumulative, team_deltas, ids);
  }
  if (!pair_deltas.empty())
    add_to_cumulative(tx, kPairCumulative, pair_deltas, resolve_keys(tx, kPairKeys, pair_deltas));
  if (!gold.empty()) {
    std::vector<GoldOutcome> outcomes;
    for (auto& [key, outcome] : gold) outcomes.push_back(std::move(outcome));
    add_gold_evidence(tx, outcomes, evidence_discount);
  }
  tx.commit();
  return events;
}

RollupTotals load_rollups(pqxx::connection& c, const RollupFilter& f) {
  RollupTotals out;
  // One snapshot for both reads: vendors and pairs from the same roll-up.
  pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(c);
  std::string counters;
  for (const auto* column : kVendorCumulative.counters) counters += minus("e", column) + ", ";
  auto vendors = run_prepared(
      tx, "quality_window_vendors",
      "SELECT k.vendor_id, " + counters +
          "  ARRAY(SELECT x - coalesce(y, 0) FROM unnest(e.latency_buckets, e_s.latency_buckets) "
          "        WITH ORDINALITY AS u(x, y, i) ORDER BY i)::text, "
          "  coalesce(" + minus("t", "judgments") + ", 0), coalesce(" + minus("t", "cost_micros") + ", 0) "
          "FROM " + kWindow + "CROSS JOIN vendor_keys k " +
          probes("vendor_cumulative", "e", "c.key_id = k.id") +
          // LEFT: the team may have no work with the vendor.
          "LEFT JOIN LATERAL (SELECT * FROM team_vendor_cumulative c WHERE c.team_id = $1 AND c.key_id = k.id "
          "  ORDER BY c.hour DESC LIMIT 1) t ON true "
          "LEFT JOIN LATERAL (SELECT * FROM team_vendor_cumulative c WHERE c.team_id = $1 AND c.key_id = k.id "
          "  AND c.hour < w.start ORDER BY c.hour DESC LIMIT 1) t_s ON true "
          "WHERE " + kLevel + "AND (w.start IS NULL OR e.hour >= w.start) ORDER BY k.vendor_id",
      f.team_id, f.window_hours, f.domain, f.task_type, f.expertise);
  for (const auto& r : vendors) {
    quality::VendorTotals v;
    v.vendor_id = r[0].as<std::string>();
    v.judgments = r[1].as<std::int64_t>();
    v.gold_n = r[2].as<std::int64_t>();
    v.gold_correct = r[3].as<std::int64_t>();
    v.cost_micros = r[4].as<std::int64_t>();
    v.answers = v.judgments + v.gold_n;
    v.on_time = r[5].as<std::int64_t>();
    v.sends = r[6].as<std::int64_t>();
    v.errors = r[7].as<std::int64_t>();
    v.ds_n = r[8].as<std::int64_t>();
    v.ds_correct = static_cast<double>(r[9].as<std::int64_t>()) / 1e6;
    v.latency = quality::LatencyHistogram::from_counts(int_array(r[10].as<std::string>()));
    v.team_items = r[11].as<std::int64_t>();
    v.team_spend_micros = r[12].as<std::int64_t>();
    out.vendors.push_back(std::move(v));
  }

  auto pairs = run_prepared(
      tx, "quality_window_pairs",
      "SELECT k.vendor_a, k.vendor_b, k.label, " + minus("e", "a_count") + ", " + minus("e", "b_count") + ", " +
          minus("e", "agree") + " FROM " + kWindow + "CROSS JOIN vendor_pair_keys k " +
          probes("vendor_pair_cumulative", "e", "c.key_id = k.id") + "WHERE " + kLevel +
          "AND (w.start IS NULL OR e.hour >= w.start) AND $1::bigint IS NOT NULL ORDER BY 1, 2, 3",
      f.team_id, f.window_hours, f.domain, f.task_type, f.expertise);
  for (const auto& r : pairs)
    out.pairs.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
                         r[3].as<std::int64_t>(), r[4].as<std::int64_t>(), r[5].as<std::int64_t>()});
  return out;
}

std::vector<DomainVolume> load_domain_volumes(pqxx::connection& c, const RollupFilter& f) {
  pqxx::read_transaction tx(c);
  // Keys of every domain at the task type and expertise level asked for.
  auto rows = run_prepared(
      tx, "quality_window_domains",
      "SELECT k.domain, k.vendor_id, " + minus("t", "judgments") + " FROM " + kWindow + "CROSS JOIN vendor_keys k " +
          probes("team_vendor_cumulative", "t", "c.team_id = $1 AND c.key_id = k.id") +
          "WHERE k.domain IS NOT NULL AND k.task_type IS NOT DISTINCT FROM $3::text "
          "AND k.expertise IS NOT DISTINCT FROM $4::text AND (w.start IS NULL OR t.hour >= w.start) ORDER BY 1, 2",
      f.team_id, f.window_hours, f.task_type, f.expertise);
  std::vector<DomainVolume> out;
  for (const auto& r : rows) out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::int64_t>()});
  return out;
}

std::vector<ShareBucket> load_share_series(pqxx::connection& c, const RollupFilter& f, bool daily) {
  pqxx::read_transaction tx(c);
  const std::string unit = daily ? "day" : "hour";
  // An all-time window still charts at most the last 90 days.
  const int hours = f.window_hours ? *f.window_hours : 90 * 24;
  auto rows = tx.exec_params(
      "SELECT domain, to_char(date_trunc('" + unit + "', hour AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
      "  vendor_id, sum(judgments)::bigint "
      "FROM vendor_hourly WHERE team_id = $1 AND hour >= date_trunc('hour', now()) - ($2::int - 1) * interval '1 hour' "
      "AND ($3::text IS NULL OR task_type = $3) AND ($4::text IS NULL OR expertise = $4) AND judgments > 0 "
      "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
      f.team_id, hours, f.task_type, f.expertise);
  std::vector<ShareBucket> out;
  for (const auto& r : rows)
    out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::int64_t>()});
  return out;
}

TeamActivity load_team_activity(pqxx::connection& c, std::int64_t team_id) {
  pqxx::read_transaction tx(c);
  TeamActivity out;
  out.jobs_in_flight =
      tx.exec_params1("SELECT count(*) FROM jobs WHERE team_id = $1 AND status IN ('queued', 'running')", team_id)[0]
          .as<std::int64_t>();
  for (const auto& r : tx.exec_params(
           "SELECT vendor_id, sum(cost_micros)::bigint FROM vendor_hourly WHERE team_id = $1 "
           "AND hour >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' GROUP BY vendor_id",
           team_id))
    out.month_spend_micros[r[0].as<std::string>()] = r[1].as<std::int64_t>();
  return out;
}

bool rollups_have_domain(pqxx::connection& c, const std::string& domain) {
  pqxx::read_transaction tx(c);
  return !tx.exec_params("SELECT 1 FROM vendor_keys WHERE domain = $1 LIMIT 1", domain).empty();
}

std::vector<std::string> rollup_domains(pqxx::connection& c) {
  pqxx::read_transaction tx(c);
  std::vector<std::string> out;
  for (const auto& r : tx.exec("SELECT DISTINCT domain FROM vendor_keys WHERE domain IS NOT NULL ORDER BY 1"))
    out.push_back(r[0].as<std::string>());
  return out;
}

}  // namespace labelbroker::db
