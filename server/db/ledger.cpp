#include "db/ledger.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "common/strings.hpp"

namespace labelbroker::db::ledger {
namespace {

using json = nlohmann::json;

struct Totals {
  std::int64_t held = 0;
  std::int64_t spent = 0;
};

// Locks the accounts (creating missing ones first) in key order and returns their totals. Every
// transaction that touches accounts goes through here, once, so they are always locked in one
// order and concurrent claims queue instead of deadlocking.
std::map<std::string, Totals> lock_accounts(pqxx::work& tx, const std::set<std::string>& keys) {
  std::map<std::string, Totals> totals;
  if (keys.empty()) return totals;
  json list = json::array();
  for (const auto& k : keys) list.push_back(k);
  const auto param = list.dump();
  // Accounts appear once per job and per team and vendor per month. They are created before any
  // is locked: creating one after locking others would take that lock out of key order (and an
  // INSERT ... ON CONFLICT against an existing row another transaction holds would wait for it
  // even though it changes nothing, so existing rows are not inserted again).
  auto existing = tx.exec_params("SELECT count(*) FROM budget_accounts WHERE key IN "
                                 "(SELECT jsonb_array_elements_text($1::jsonb))",
                                 param);
  if (existing[0][0].as<std::size_t>() < keys.size())
    tx.exec_params0(
        "INSERT INTO budget_accounts (key) SELECT k FROM jsonb_array_elements_text($1::jsonb) AS x(k) ORDER BY k "
        "ON CONFLICT (key) DO NOTHING",
        param);
  auto rows = tx.exec_params(
      "SELECT key, held_micros, spent_micros FROM budget_accounts "
      "WHERE key IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY key FOR UPDATE",
      param);
  for (const auto& r : rows) totals[r[0].as<std::string>()] = {r[1].as<std::int64_t>(), r[2].as<std::int64_t>()};
  return totals;
}

void write_accounts(pqxx::work& tx, const std::map<std::string, Totals>& totals,
                    const std::map<std::string, std::optional<std::int64_t>>& limits) {
  if (totals.empty()) return;
  json rows = json::array();
  for (const auto& [key, t] : totals) {
    json row = {{"key", key}, {"held", t.held}, {"spent", t.spent}, {"set_limit", false}, {"lim", nullptr}};
    if (auto l = limits.find(key); l != limits.end()) {
      row["set_limit"] = true;
      if (l->second) row["lim"] = *l->second;
    }
    rows.push_back(std::move(row));
  }
  tx.exec_params0(
      "UPDATE budget_accounts b SET held_micros = x.held, spent_micros = x.spent, updated_at = now(), "
      "  limit_micros = CASE WHEN x.set_limit THEN x.lim ELSE b.limit_micros END "
      "FROM jsonb_to_recordset($1::jsonb) AS x(key text, held bigint, spent bigint, set_limit boolean, lim bigint) "
      "WHERE b.key = x.key",
      rows.dump());
}

}  // namespace

std::string job_account(const std::string& job_id) { return "job:" + job_id; }
std::string team_account(std::int64_t team_id, const std::string& month) {
  return "team:" + std::to_string(team_id) + ":" + month;
}
std::string vendor_account(const std::string& vendor_id, const std::string& month) {
  return "vendor:" + vendor_id + ":" + month;
}

std::string current_month(pqxx::work& tx) {
  return tx.exec("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')")[0][0].as<std::string>();
}

std::vector<HoldRefusal> hold(pqxx::work& tx, const std::vector<HoldRequest>& requests,
                              std::optional<std::int64_t> vendor_monthly_budget_micros) {
  std::vector<HoldRefusal> refusals(requests.size(), HoldRefusal::none);
  if (requests.empty()) return refusals;
  const std::string month = current_month(tx);
  std::set<std::string> keys;
  std::map<std::string, std::optional<std::int64_t>> limits;
  for (const auto& r : requests) {
    keys.insert(job_account(r.job_id));
    keys.insert(team_account(r.team_id, month));
    keys.insert(vendor_account(r.vendor_id, month));
    limits[job_account(r.job_id)] = r.job_budget_micros;
    limits[team_account(r.team_id, month)] = r.team_monthly_budget_micros;
    limits[vendor_account(r.vendor_id, month)] = vendor_monthly_budget_micros;
  }
  auto totals = lock_accounts(tx, keys);
  auto fits = [&](const std::string& key, std::int64_t amount) {
    const auto& limit = limits[key];
    if (!limit) return true;
    const auto& t = totals[key];
    return t.held + t.spent + amount <= *limit;
  };
  json entries = json::array();
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    const std::int64_t quote = std::max<std::int64_t>(0, r.quote_micros);
    const auto job = job_account(r.job_id), team = team_account(r.team_id, month),
               vendor = vendor_account(r.vendor_id, month);
    // Checked in this order, so a refusal names the narrowest budget that is spent.
    const std::pair<const std::string*, HoldRefusal> budgets[] = {
        {&job, HoldRefusal::job_budget}, {&team, HoldRefusal::team_budget}, {&vendor, HoldRefusal::vendor_budget}};
    for (const auto& [key, refusal] : budgets)
      if (refusals[i] == HoldRefusal::none && !fits(*key, quote)) refusals[i] = refusal;
    if (refusals[i] != HoldRefusal::none) continue;
    for (const auto& [key, refusal] : budgets) totals[*key].held += quote;
    entries.push_back({{"id", r.assignment_id},
                       {"job_id", r.job_id},
                       {"team_id", r.team_id},
                       {"vendor_id", r.vendor_id},
                       {"gold", r.gold},
                       {"amount", quote}});
  }
  if (!entries.empty())
    tx.exec_params0(
        "INSERT INTO ledger_entries (kind, assignment_id, job_id, team_id, vendor_id, month, gold, amount_micros) "
        "SELECT 'hold', x.id, x.job_id, x.team_id, x.vendor_id, to_date($2, 'YYYY-MM'), x.gold, x.amount "
        "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, job_id uuid, team_id bigint, vendor_id text, gold boolean, "
        "  amount bigint)",
        entries.dump(), month);
  write_accounts(tx, totals, limits);
  return refusals;
}

std::size_t close(pqxx::work& tx, const std::vector<std::string>& assignment_ids) {
  if (assignment_ids.empty()) return 0;
  // A uuid[] parameter rather than a JSON list: `= ANY(array)` gets a row estimate from the array
  // itself, so the planner probes the hold index even when the table's statistics still describe
  // it as nearly empty (it grows by thousands of rows a second; with a JSON list it scanned every
  // hold per call).
  std::string ids = "{";
  for (const auto& id : assignment_ids) {
    if (!common::is_uuid(id)) continue;
    if (ids.size() > 1) ids += ',';
    ids += id;
  }
  ids += '}';
  auto rows = tx.exec_params(
      "WITH c AS ("
      "  SELECT h.assignment_id, h.job_id, h.team_id, h.vendor_id, h.month, h.gold, h.amount_micros AS held, "
      "         a.state, greatest(coalesce(a.cost_micros, a.quote_micros), 0) AS cost "
      "  FROM ledger_entries h JOIN assignments a ON a.id = h.assignment_id "
      "  WHERE h.assignment_id = ANY($1::uuid[]) AND h.kind = 'hold' "
      "    AND a.state IN ('completed', 'failed', 'canceled')) "
      "INSERT INTO ledger_entries (kind, assignment_id, job_id, team_id, vendor_id, month, gold, amount_micros, "
      "  releases_micros) "
      "SELECT CASE WHEN state = 'completed' THEN 'settle' ELSE 'release' END, assignment_id, job_id, team_id, "
      "  vendor_id, month, gold, CASE WHEN state = 'completed' THEN cost ELSE held END, "
      "  CASE WHEN state = 'completed' THEN held ELSE 0 END "
      "FROM c ORDER BY assignment_id "
      "ON CONFLICT (assignment_id) WHERE kind <> 'hold' DO NOTHING "
      "RETURNING kind, job_id::text, team_id, vendor_id, to_char(month, 'YYYY-MM'), amount_micros, releases_micros",
      ids);
  if (rows.empty()) return 0;
  struct Delta {
    std::int64_t held = 0, spent = 0;
  };
  std::map<std::string, Delta> deltas;
  for (const auto& r : rows) {
    const bool settle = r[0].as<std::string>() == "settle";
    const auto amount = r[5].as<std::int64_t>();
    const Delta d = settle ? Delta{-r[6].as<std::int64_t>(), amount} : Delta{-amount, 0};
    const auto month = r[4].as<std::string>();
    for (const auto& key : {job_account(r[1].as<std::string>()), team_account(r[2].as<std::int64_t>(), month),
                            vendor_account(r[3].as<std::string>(), month)}) {
      deltas[key].held += d.held;
      deltas[key].spent += d.spent;
    }
  }
  json pending = json::array();
  for (const auto& [key, d] : deltas) pending.push_back({{"key", key}, {"held", d.held}, {"spent", d.spent}});
  tx.exec_params0(
      "INSERT INTO account_deltas (key, held_delta, spent_delta) "
      "SELECT x.key, x.held, x.spent FROM jsonb_to_recordset($1::jsonb) AS x(key text, held bigint, spent bigint)",
      pending.dump());
  return rows.size();
}

std::size_t apply_deltas(pqxx::work& tx, std::size_t max_rows) {
  auto rows = tx.exec_params(
      "WITH d AS (DELETE FROM account_deltas WHERE id IN "
      "             (SELECT id FROM account_deltas ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) "
      "           RETURNING key, held_delta, spent_delta) "
      "SELECT key, sum(held_delta)::bigint, sum(spent_delta)::bigint, count(*) FROM d GROUP BY key",
      static_cast<long>(max_rows));
  if (rows.empty()) return 0;
  std::set<std::string> keys;
  std::size_t applied = 0;
  for (const auto& r : rows) {
    keys.insert(r[0].as<std::string>());
    applied += r[3].as<std::size_t>();
  }
  auto totals = lock_accounts(tx, keys);
  for (const auto& r : rows) {
    auto& t = totals[r[0].as<std::string>()];
    t.held += r[1].as<std::int64_t>();
    t.spent += r[2].as<std::int64_t>();
  }
  write_accounts(tx, totals, {});
  return applied;
}

Balance job_balance(pqxx::work& tx, const std::string& job_id) {
  // The account plus what is still pending for it: exact, whether or not deltas were applied.
  auto rows = tx.exec_params(
      "SELECT coalesce((SELECT held_micros FROM budget_accounts WHERE key = $1), 0) + "
      "         coalesce((SELECT sum(held_delta) FROM account_deltas WHERE key = $1), 0), "
      "       coalesce((SELECT spent_micros FROM budget_accounts WHERE key = $1), 0) + "
      "         coalesce((SELECT sum(spent_delta) FROM account_deltas WHERE key = $1), 0)",
      job_account(job_id));
  return {rows[0][0].as<std::int64_t>(), rows[0][1].as<std::int64_t>()};
}

}  // namespace labelbroker::db::ledger
