#include "db/metrics_store.hpp"

#include <pqxx/pqxx>

namespace labelbroker::db {

ClusterStats load_cluster_stats(pqxx::connection& c) {
  ClusterStats out;
  pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(c);
  out.month = tx.exec1("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')")[0].as<std::string>();

  for (const auto& r : tx.exec("SELECT status, count(*) FROM jobs GROUP BY status"))
    out.jobs_by_status[r[0].as<std::string>()] = r[1].as<std::int64_t>();

  // One branch per state so that each reads its partial index instead of scanning every
  // assignment ever made (paused and sending have no vendor in their index, but are few).
  const auto assignments = tx.exec(
      "SELECT vendor_id, 'queued', count(*) FROM assignments WHERE state = 'queued' GROUP BY vendor_id "
      "UNION ALL SELECT vendor_id, 'paused', count(*) FROM assignments WHERE state = 'paused' GROUP BY vendor_id "
      "UNION ALL SELECT vendor_id, 'sending', count(*) FROM assignments WHERE state = 'sending' GROUP BY vendor_id "
      "UNION ALL SELECT vendor_id, 'submitted', count(*) FROM assignments WHERE state = 'submitted' "
      "GROUP BY vendor_id");
  for (const auto& r : assignments)
    out.vendors[r[0].as<std::string>()].assignments[r[1].as<std::string>()] = r[2].as<std::int64_t>();

  // Budget totals of this month: the team and vendor accounts (see ledger.cpp for the keys), plus
  // the settles and releases still queued in account_deltas, so the totals are exact as of this
  // snapshot rather than as of the last maintenance pass.
  const auto accounts = tx.exec_params(
      "SELECT split_part(key, ':', 1), split_part(key, ':', 2), sum(held)::bigint, sum(spent)::bigint FROM ("
      "  SELECT key, held_micros AS held, spent_micros AS spent FROM budget_accounts "
      "  UNION ALL SELECT key, held_delta, spent_delta FROM account_deltas) x "
      "WHERE (key LIKE 'team:%' OR key LIKE 'vendor:%') AND right(key, 8) = ':' || $1 GROUP BY 1, 2",
      out.month);
  for (const auto& r : accounts) {
    const auto kind = r[0].as<std::string>();
    const auto held = r[2].as<std::int64_t>();
    const auto spent = r[3].as<std::int64_t>();
    if (kind == "team") {
      out.team_held_micros_month += held;
      out.team_spent_micros_month += spent;
    } else {
      auto& v = out.vendors[r[1].as<std::string>()];
      v.held_micros_month += held;
      v.spent_micros_month += spent;
    }
  }

  // Per vendor, its key over all domains, task types and tiers: the latest running total (all
  // time) and the latest before the last 24 hours (the current hour and the 23 before it).
  const auto quality = tx.exec(
      "SELECT k.vendor_id, e.gold_n, e.gold_correct, e.judgments - coalesce(s.judgments, 0) "
      "FROM vendor_keys k "
      "CROSS JOIN LATERAL (SELECT * FROM vendor_cumulative c WHERE c.key_id = k.id "
      "  ORDER BY c.hour DESC LIMIT 1) e "
      "LEFT JOIN LATERAL (SELECT * FROM vendor_cumulative c WHERE c.key_id = k.id "
      "  AND c.hour < date_trunc('hour', now()) - interval '23 hours' ORDER BY c.hour DESC LIMIT 1) s ON true "
      // The coalesce terms match vendor_keys' level index; the exact test follows.
      "WHERE coalesce(k.domain, '') = '' AND coalesce(k.task_type, '') = '' AND coalesce(k.expertise, '') = '' "
      "  AND k.domain IS NULL AND k.task_type IS NULL AND k.expertise IS NULL");
  for (const auto& r : quality) {
    auto& v = out.vendors[r[0].as<std::string>()];
    v.gold_n = r[1].as<std::int64_t>();
    v.gold_correct = r[2].as<std::int64_t>();
    v.judgments_24h = r[3].as<std::int64_t>();
  }
  tx.commit();
  return out;
}

}  // namespace labelbroker::db
