#include "db/routing_store.hpp"

#include <cmath>

#include <pqxx/pqxx>

#include "db/ledger.hpp"

namespace labelbroker::db {
namespace {

using json = nlohmann::json;

std::vector<std::string> text_array(const std::string& json_text) {
  std::vector<std::string> out;
  for (const auto& v : json::parse(json_text)) out.push_back(v.get<std::string>());
  return out;
}

VendorSetting setting_from(const pqxx::row& r, int first) {
  VendorSetting s;
  if (!r[first].is_null()) s.enabled = r[first].as<bool>();
  if (!r[first + 1].is_null()) s.weight = r[first + 1].as<double>();
  return s;
}

}  // namespace

std::map<std::string, VendorSetting> load_vendor_settings(pqxx::connection& c) {
  pqxx::read_transaction tx(c);
  std::map<std::string, VendorSetting> out;
  for (const auto& r : tx.exec("SELECT vendor_id, enabled, weight FROM vendor_settings"))
    out[r[0].as<std::string>()] = setting_from(r, 1);
  return out;
}

std::string routing_scope(const std::string& domain, const std::string& task_type) { return domain + "/" + task_type; }

RoutingSnapshot load_routing_snapshot(pqxx::work& tx, const SnapshotRequest& request) {
  RoutingSnapshot snapshot;
  const auto scope = routing_scope(request.domain, request.task_type);
  if (request.lock_scope)
    tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended('labelbroker.routing:' || $1, 0))", scope);
  const auto month = ledger::current_month(tx);

  for (const auto& r : tx.exec(
           "SELECT vendor_id, count(*) FROM assignments WHERE state IN ('queued', 'sending', 'submitted') "
           "GROUP BY vendor_id"))
    snapshot.vendors[r[0].as<std::string>()].outstanding = r[1].as<std::int64_t>();

  // Vendor-month accounts plus their pending deltas (settles and releases not yet applied).
  for (const auto& r : tx.exec_params(
           "SELECT split_part(k.key, ':', 2), sum(k.total) FROM ("
           "  SELECT key, held_micros + spent_micros AS total FROM budget_accounts "
           "  WHERE key LIKE 'vendor:%' AND key LIKE '%:' || $1 "
           "  UNION ALL SELECT key, held_delta + spent_delta FROM account_deltas "
           "  WHERE key LIKE 'vendor:%' AND key LIKE '%:' || $1) k GROUP BY 1",
           month))
    snapshot.vendors[r[0].as<std::string>()].monthly_spend_micros = r[1].as<std::int64_t>();

  const auto team_key = ledger::team_account(request.team_id, month);
  auto team = tx.exec_params(
      "SELECT t.monthly_budget_micros, array_to_json(t.denied_vendors)::text, t.name, "
      "  coalesce((SELECT held_micros + spent_micros FROM budget_accounts WHERE key = $2), 0) "
      "  + coalesce((SELECT sum(held_delta + spent_delta) FROM account_deltas WHERE key = $2), 0) "
      "FROM teams t WHERE t.id = $1",
      request.team_id, team_key);
  if (!team.empty()) {
    if (!team[0][0].is_null()) snapshot.team_monthly_cap_micros = team[0][0].as<std::int64_t>();
    snapshot.team_denied_vendors = text_array(team[0][1].as<std::string>());
    snapshot.team_name = team[0][2].as<std::string>();
    snapshot.team_monthly_spend_micros = team[0][3].as<std::int64_t>();
  }

  for (const auto& r : tx.exec_params(
           "SELECT vendor_id, correct, n, greatest(extract(epoch FROM now() - updated_at), 0) / 3600.0 "
           "FROM vendor_evidence WHERE domain = $1 AND task_type = $2",
           request.domain, request.task_type)) {
    auto& v = snapshot.vendors[r[0].as<std::string>()];
    v.gold_correct = r[1].as<double>();
    v.gold_n = r[2].as<double>();
    v.evidence_age_hours = r[3].as<double>();
  }

  for (const auto& r : tx.exec_params(
           "SELECT vendor_id, sum(judgments) FROM routing_window "
           "WHERE domain = $1 AND hour > now() - $2::bigint * interval '1 hour' GROUP BY vendor_id",
           request.domain, static_cast<long>(request.window.count())))
    snapshot.vendors[r[0].as<std::string>()].window_judgments = r[1].as<std::int64_t>();

  for (const auto& r : tx.exec_params("SELECT vendor_id, credit FROM routing_counters WHERE scope = $1", scope))
    snapshot.vendors[r[0].as<std::string>()].counter = r[1].as<double>();
  return snapshot;
}

RoutingSnapshot read_routing_snapshot(pqxx::connection& c, SnapshotRequest request) {
  pqxx::work tx(c);
  request.lock_scope = false;
  auto snapshot = load_routing_snapshot(tx, request);
  tx.commit();
  return snapshot;
}

void save_routing(pqxx::work& tx, const RoutingWrite& write) {
  if (!write.counters.empty()) {
    json rows = json::array();
    for (const auto& [vendor, credit] : write.counters) rows.push_back({{"v", vendor}, {"c", credit}});
    tx.exec_params0(
        "INSERT INTO routing_counters (scope, vendor_id, credit) "
        "SELECT $1, x.v, x.c FROM jsonb_to_recordset($2::jsonb) AS x(v text, c double precision) "
        "ON CONFLICT (scope, vendor_id) DO UPDATE SET credit = excluded.credit",
        write.scope, rows.dump());
  }
  json counts = json::array();
  for (const auto& [vendor, n] : write.judgments)
    if (n != 0) counts.push_back({{"v", vendor}, {"n", n}});
  if (!counts.empty())
    tx.exec_params0(
        "INSERT INTO routing_window AS w (domain, vendor_id, hour, judgments) "
        "SELECT $1, x.v, date_trunc('hour', now()), x.n FROM jsonb_to_recordset($2::jsonb) AS x(v text, n bigint) "
        "ON CONFLICT (domain, hour, vendor_id) DO UPDATE SET judgments = w.judgments + excluded.judgments",
        write.domain, counts.dump());
  if (!write.decision.is_null())
    tx.exec_params0("INSERT INTO routing_decisions (job_id, kind, items, decision) VALUES ($1::uuid, $2, $3, $4::jsonb)",
                    write.job_id, write.kind, write.items, write.decision.dump());
}

void add_gold_evidence(pqxx::work& tx, const std::vector<GoldOutcome>& outcomes, double discount) {
  json rows = json::array();
  for (const auto& o : outcomes) {
    if (!(o.n > 0)) continue;
    // routing::DiscountedEvidence::observe, as one row update: old * keep + weight * rate.
    const double keep = std::pow(discount, o.n);
    const double weight = discount < 1 ? (1 - keep) / (1 - discount) : o.n;
    rows.push_back({{"v", o.vendor_id},
                    {"d", o.domain},
                    {"t", o.task_type},
                    {"keep", keep},
                    {"c", weight * (o.correct / o.n)},
                    {"n", weight}});
  }
  if (rows.empty()) return;
  // Only the quality roll-up calls this, under its advisory lock: no concurrent insert of a key.
  tx.exec_params0(
      "WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) "
      "           AS x(v text, d text, t text, keep double precision, c double precision, n double precision)), "
      "u AS (UPDATE vendor_evidence e SET correct = least(e.correct * x.keep + x.c, e.n * x.keep + x.n), "
      "        n = e.n * x.keep + x.n, updated_at = now() "
      "      FROM x WHERE e.domain = x.d AND e.task_type = x.t AND e.vendor_id = x.v "
      "      RETURNING e.vendor_id, e.domain, e.task_type) "
      "INSERT INTO vendor_evidence (vendor_id, domain, task_type, correct, n) "
      "SELECT x.v, x.d, x.t, x.c, x.n FROM x "
      "WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.vendor_id = x.v AND u.domain = x.d AND u.task_type = x.t)",
      rows.dump());
}

DecisionPage list_routing_decisions(pqxx::connection& c, std::int64_t team_id, const std::string& job_id,
                                    std::optional<std::int64_t> before, int limit) {
  DecisionPage page;
  pqxx::read_transaction tx(c);
  auto job = tx.exec_params("SELECT 1 FROM jobs WHERE id = $1::uuid AND team_id = $2", job_id, team_id);
  if (job.empty()) return page;
  page.job_found = true;
  auto counts = tx.exec_params1(
      "SELECT count(*), count(*) FILTER (WHERE decision->>'cap_unsatisfiable' = 'true') FROM routing_decisions "
      "WHERE job_id = $1::uuid",
      job_id);
  page.total = counts[0].as<std::int64_t>();
  page.cap_unsatisfiable = counts[1].as<std::int64_t>();
  auto rows = tx.exec_params(
      "SELECT id, kind, items, decision::text, "
      "  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
      "FROM routing_decisions WHERE job_id = $1::uuid AND ($2::bigint IS NULL OR id < $2) "
      "ORDER BY id DESC LIMIT $3",
      job_id, before, limit + 1);
  for (const auto& r : rows) {
    if (static_cast<int>(page.decisions.size()) == limit) {
      page.next_before = page.decisions.back().id;
      break;
    }
    page.decisions.push_back({r[0].as<std::int64_t>(), r[1].as<std::string>(), r[2].as<int>(),
                              json::parse(r[3].as<std::string>()), r[4].as<std::string>()});
  }
  return page;
}

}  // namespace labelbroker::db
