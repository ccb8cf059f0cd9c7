#include "db/quality_store.hpp"

#include <map>
#include <tuple>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

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

// The filter's WHERE clause over vendor_hourly / vendor_pair_hourly; parameters $2..$5.
constexpr const char* kFilter =
    "($2::int IS NULL OR hour >= date_trunc('hour', now()) - ($2::int - 1) * interval '1 hour') "
    "AND ($3::text IS NULL OR domain = $3) AND ($4::text IS NULL OR task_type = $4) "
    "AND ($5::text IS NULL OR expertise = $5)";

}  // namespace

std::size_t roll_up_quality(pqxx::connection& c, std::size_t max_events) {
  pqxx::work tx(c);
  if (!tx.exec("SELECT pg_try_advisory_xact_lock(hashtext('labelbroker.quality_rollup'))")[0][0].as<bool>()) return 0;
  auto groups = tx.exec_params(
      "WITH e AS (DELETE FROM quality_events WHERE id IN (SELECT id FROM quality_events ORDER BY id LIMIT $1) "
      "           RETURNING *) "
      "SELECT to_char(date_trunc('hour', at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00Z'), team_id, vendor_id, "
      "  domain, task_type, expertise, sum(judgments), sum(gold_n), sum(gold_correct), sum(cost_micros), "
      "  sum(on_time), sum(sends), sum(errors), sum(ds_n), sum(ds_correct), "
      "  coalesce(array_agg(latency_ms) FILTER (WHERE latency_ms IS NOT NULL), '{}')::text, count(*) "
      "FROM e GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6",
      static_cast<long>(max_events));
  std::size_t events = 0;
  json rows = json::array();
  for (const auto& g : groups) {
    quality::LatencyHistogram histogram;
    for (auto ms : int_array(g[15].as<std::string>())) histogram.add(static_cast<double>(ms));
    rows.push_back({{"hour", g[0].as<std::string>()},
                    {"team_id", g[1].as<std::int64_t>()},
                    {"vendor_id", g[2].as<std::string>()},
                    {"domain", g[3].as<std::string>()},
                    {"task_type", g[4].as<std::string>()},
                    {"expertise", g[5].as<std::string>()},
                    {"judgments", g[6].as<std::int64_t>()},
                    {"gold_n", g[7].as<std::int64_t>()},
                    {"gold_correct", g[8].as<std::int64_t>()},
                    {"cost", g[9].as<std::int64_t>()},
                    {"on_time", g[10].as<std::int64_t>()},
                    {"sends", g[11].as<std::int64_t>()},
                    {"errors", g[12].as<std::int64_t>()},
                    {"ds_n", g[13].as<std::int64_t>()},
                    {"ds_correct", g[14].as<double>()},
                    {"buckets", histogram.counts()}});
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
  auto pairs = tx.exec_params(
      "WITH e AS (DELETE FROM agreement_events WHERE id IN (SELECT id FROM agreement_events ORDER BY id LIMIT $1) "
      "           RETURNING *), "
      "r AS (SELECT date_trunc('hour', at) AS hour, vendor_a, vendor_b, domain, task_type, expertise, label_a AS label, "
      "             1 AS a, 0 AS b, (label_a = label_b)::int AS agree FROM e "
      "      UNION ALL "
      "      SELECT date_trunc('hour', at), vendor_a, vendor_b, domain, task_type, expertise, label_b, 0, 1, 0 FROM e), "
      "ins AS (INSERT INTO vendor_pair_hourly AS p (hour, vendor_a, vendor_b, domain, task_type, expertise, label, "
      "          a_count, b_count, agree) "
      "        SELECT hour, vendor_a, vendor_b, domain, task_type, expertise, label, sum(a), sum(b), sum(agree) "
      "        FROM r GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7 "
      "        ON CONFLICT (hour, vendor_a, vendor_b, domain, task_type, expertise, label) DO UPDATE SET "
      "          a_count = p.a_count + excluded.a_count, b_count = p.b_count + excluded.b_count, "
      "          agree = p.agree + excluded.agree) "
      "SELECT count(*) FROM e",
      static_cast<long>(max_events));
  events += pairs[0][0].as<std::size_t>();
  tx.commit();
  return events;
}

RollupTotals load_rollups(pqxx::connection& c, const RollupFilter& f) {
  RollupTotals out;
  pqxx::read_transaction tx(c);
  std::map<std::string, quality::VendorTotals> vendors;
  auto totals = tx.exec_params(
      std::string("SELECT vendor_id, sum(judgments), sum(gold_n), sum(gold_correct), sum(cost_micros), "
                  "  sum(judgments + gold_n), sum(on_time), sum(sends), sum(errors), sum(ds_n), sum(ds_correct), "
                  "  coalesce(sum(judgments) FILTER (WHERE team_id = $1), 0), "
                  "  coalesce(sum(cost_micros) FILTER (WHERE team_id = $1), 0) "
                  "FROM vendor_hourly WHERE ") +
          kFilter + " GROUP BY vendor_id",
      f.team_id, f.window_hours, f.domain, f.task_type, f.expertise);
  for (const auto& r : totals) {
    quality::VendorTotals v;
    v.vendor_id = r[0].as<std::string>();
    v.judgments = r[1].as<std::int64_t>();
    v.gold_n = r[2].as<std::int64_t>();
    v.gold_correct = r[3].as<std::int64_t>();
    v.cost_micros = r[4].as<std::int64_t>();
    v.answers = r[5].as<std::int64_t>();
    v.on_time = r[6].as<std::int64_t>();
    v.sends = r[7].as<std::int64_t>();
    v.errors = r[8].as<std::int64_t>();
    v.ds_n = r[9].as<std::int64_t>();
    v.ds_correct = r[10].as<double>();
    v.team_items = r[11].as<std::int64_t>();
    v.team_spend_micros = r[12].as<std::int64_t>();
    vendors.emplace(v.vendor_id, std::move(v));
  }
  auto buckets = tx.exec_params(
      std::string("SELECT vendor_id, u.i, sum(u.n) FROM vendor_hourly, "
                  "  unnest(latency_buckets) WITH ORDINALITY AS u(n, i) WHERE ") +
          kFilter + " AND $1::bigint IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
      f.team_id, f.window_hours, f.domain, f.task_type, f.expertise);
  std::map<std::string, std::vector<std::int64_t>> counts;
  for (const auto& r : buckets) {
    auto& v = counts[r[0].as<std::string>()];
    v.resize(quality::kLatencyBucketsMs.size(), 0);
    const auto i = r[1].as<std::size_t>();
    if (i >= 1 && i <= v.size()) v[i - 1] = r[2].as<std::int64_t>();
  }
  for (auto& [id, v] : counts)
    if (auto it = vendors.find(id); it != vendors.end()) it->second.latency = quality::LatencyHistogram::from_counts(v);
  for (auto& [id, v] : vendors) out.vendors.push_back(std::move(v));

  auto pairs = tx.exec_params(
      std::string("SELECT vendor_a, vendor_b, label, sum(a_count), sum(b_count), sum(agree) "
                  "FROM vendor_pair_hourly WHERE ") +
          kFilter + " AND $1::bigint IS NOT NULL GROUP BY 1, 2, 3",
      f.team_id, f.window_hours, f.domain, f.task_type, f.expertise);
  for (const auto& r : pairs)
    out.pairs.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
                         r[3].as<std::int64_t>(), r[4].as<std::int64_t>(), r[5].as<std::int64_t>()});
  return out;
}

std::vector<DomainVolume> load_domain_volumes(pqxx::connection& c, const RollupFilter& f) {
  pqxx::read_transaction tx(c);
  auto rows = tx.exec_params(
      std::string("SELECT domain, vendor_id, sum(judgments) FROM vendor_hourly WHERE team_id = $1 AND ") + kFilter +
          " GROUP BY 1, 2 ORDER BY 1, 2",
      f.team_id, f.window_hours, std::optional<std::string>{}, f.task_type, f.expertise);
  std::vector<DomainVolume> out;
  for (const auto& r : rows) out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::int64_t>()});
  return out;
}

bool rollups_have_domain(pqxx::connection& c, const std::string& domain) {
  pqxx::read_transaction tx(c);
  return !tx.exec_params("SELECT 1 FROM vendor_hourly WHERE domain = $1 LIMIT 1", domain).empty();
}

std::vector<std::string> rollup_domains(pqxx::connection& c) {
  pqxx::read_transaction tx(c);
  std::vector<std::string> out;
  // A loose index scan: one index probe per distinct domain instead of reading every row.
  for (const auto& r : tx.exec(
           "WITH RECURSIVE d AS ((SELECT domain FROM vendor_hourly ORDER BY domain LIMIT 1) "
           "  UNION ALL SELECT (SELECT v.domain FROM vendor_hourly v WHERE v.domain > d.domain ORDER BY v.domain "
           "                    LIMIT 1) FROM d WHERE d.domain IS NOT NULL) "
           "SELECT domain FROM d WHERE domain IS NOT NULL"))
    out.push_back(r[0].as<std::string>());
  return out;
}

}  // namespace labelbroker::db
