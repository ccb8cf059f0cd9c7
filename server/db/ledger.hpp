#pragma once
// The cost ledger inside the caller's transaction (storage-internal: dispatch_store and
// job_store call these; nothing above db/ sees pqxx).
//
// Money moves per assignment: hold (its quote, when it is first sent), then settle (the vendor's
// charge; closes the hold) or release (failed or canceled; closes the hold). Unique indexes make
// each of those happen at most once, so a repeated callback or cancel cannot bill twice.
// budget_accounts carry the totals the entries imply. Holds update them in the claiming
// transaction, locked in key order after its assignment rows, so concurrent dispatchers neither
// deadlock nor overshoot a budget; settles and releases append account_deltas, applied later.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/transaction>

namespace labelbroker::db::ledger {

std::string job_account(const std::string& job_id);
std::string team_account(std::int64_t team_id, const std::string& month);      // month: YYYY-MM
std::string vendor_account(const std::string& vendor_id, const std::string& month);

// The current UTC month as the database sees it ("YYYY-MM").
std::string current_month(pqxx::work& tx);

// A unit that wants money held before it is sent.
struct HoldRequest {
  std::string assignment_id;
  std::string job_id;
  std::int64_t team_id = 0;
  std::string vendor_id;
  std::int64_t quote_micros = 0;
  bool gold = false;
  std::int64_t job_budget_micros = 0;
  std::optional<std::int64_t> team_monthly_budget_micros;
};

enum class HoldRefusal { none, job_budget, team_budget, vendor_budget };

// Fits the requests, in order, into the job, team-month and vendor-month budgets (each request
// must fit all three) and holds the ones that do: ledger entries plus account totals. Returns one
// refusal per request (none = held). A request refused by a budget does not stop later, cheaper
// ones from fitting.
std::vector<HoldRefusal> hold(pqxx::work& tx, const std::vector<HoldRequest>& requests,
                              std::optional<std::int64_t> vendor_monthly_budget_micros);

// Settles completed assignments (their cost_micros, else their quote) and releases failed or
// canceled ones, for those of `assignment_ids` that hold money and are not closed yet. The account
// totals change through account_deltas (applied by apply_deltas), so recording results never
// waits on a budget row. Returns how many entries were written.
std::size_t close(pqxx::work& tx, const std::vector<std::string>& assignment_ids);

// Applies up to `max_rows` pending deltas to budget_accounts (locked in key order). Returns how
// many were applied.
std::size_t apply_deltas(pqxx::work& tx, std::size_t max_rows);

// A job's totals: its account plus its pending deltas.
struct Balance {
  std::int64_t held_micros = 0;
  std::int64_t spent_micros = 0;
};
Balance job_balance(pqxx::work& tx, const std::string& job_id);

}  // namespace labelbroker::db::ledger
