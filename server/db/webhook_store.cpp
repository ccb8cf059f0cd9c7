#include "db/webhook_store.hpp"

#include <pqxx/pqxx>

namespace labelbroker::db {

std::vector<ClaimedDelivery> claim_due_deliveries(pqxx::connection& c, std::size_t limit,
                                                  std::chrono::milliseconds lease) {
  pqxx::work tx(c);
  // The CTE locks the due rows (skipping rows another process is claiming right now); the UPDATE
  // pushes them out of "due" before the commit releases the locks. A concurrent claimer whose
  // snapshot still saw them as due re-checks the updated row under FOR UPDATE and skips it.
  auto rows = tx.exec_params(
      "WITH due AS ("
      "  SELECT id FROM webhook_deliveries"
      "  WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()"
      "  ORDER BY next_attempt_at, id"
      "  LIMIT $1"
      "  FOR UPDATE SKIP LOCKED) "
      "UPDATE webhook_deliveries w"
      "  SET attempts = w.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond'"
      "  FROM due, teams t"
      "  WHERE w.id = due.id AND t.id = w.team_id "
      "RETURNING w.id, w.job_id, w.team_id, w.url, w.event, w.body, t.webhook_secret, w.attempts",
      static_cast<std::int64_t>(limit), static_cast<std::int64_t>(lease.count()));
  tx.commit();
  std::vector<ClaimedDelivery> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    out.push_back(ClaimedDelivery{r[0].as<std::int64_t>(), r[1].as<std::string>(), r[2].as<std::int64_t>(),
                                  r[3].as<std::string>(), r[4].as<std::string>(), r[5].as<std::string>(),
                                  r[6].as<std::string>(), r[7].as<int>()});
  }
  return out;
}

bool record_delivered(pqxx::connection& c, std::int64_t id, int status) {
  // Not tied to our claim: the receiver has the event, whoever claimed the row since.
  pqxx::work tx(c);
  auto rows = tx.exec_params(
      "UPDATE webhook_deliveries SET delivered_at = now(), last_status = $2, last_error = NULL "
      "WHERE id = $1 AND delivered_at IS NULL AND failed_at IS NULL RETURNING id",
      id, status);
  tx.commit();
  return !rows.empty();
}

AttemptOutcome record_failed_attempt(pqxx::connection& c, std::int64_t id, int attempt, int status,
                                     const std::string& error, std::chrono::milliseconds retry_in,
                                     std::chrono::milliseconds give_up_after) {
  pqxx::work tx(c);
  auto rows = tx.exec_params(
      "WITH next AS (SELECT now() + $5 * interval '1 millisecond' AS at) "
      "UPDATE webhook_deliveries w SET"
      "  last_status = NULLIF($3, 0),"
      "  last_error = $4,"
      "  next_attempt_at = next.at,"
      "  failed_at = CASE WHEN next.at > LEAST(w.give_up_at, w.created_at + $6 * interval '1 millisecond')"
      "                   THEN now() END "
      "FROM next "
      "WHERE w.id = $1 AND w.attempts = $2 AND w.delivered_at IS NULL AND w.failed_at IS NULL "
      "RETURNING w.failed_at IS NOT NULL",
      id, attempt, status, error, static_cast<std::int64_t>(retry_in.count()),
      static_cast<std::int64_t>(give_up_after.count()));
  tx.commit();
  if (rows.empty()) return AttemptOutcome::stale;
  return rows[0][0].as<bool>() ? AttemptOutcome::gave_up : AttemptOutcome::retry_scheduled;
}

}  // namespace labelbroker::db
