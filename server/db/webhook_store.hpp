#pragma once
// The webhook outbox (schema/0002 webhook_deliveries): claim due deliveries, record outcomes.
//
// Rows are written by the dispatch code in the transaction that ends a job; any number of broker
// processes deliver them. A claim moves next_attempt_at forward by a lease and counts the attempt
// in the same statement, so no other process sees the row as due while this one sends it; if this
// process dies mid-send, the row is due again when the lease runs out (at-least-once delivery).
// Parameterised SQL only; every function is one transaction of its own.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <pqxx/connection>

namespace labelbroker::db {

// One claimed delivery. `secret` is the team's webhook signing key: never log it.
struct ClaimedDelivery {
  std::int64_t id = 0;
  std::string job_id;
  std::int64_t team_id = 0;
  std::string url;
  std::string event;
  std::string body;  // the exact bytes to POST (and sign)
  std::string secret;
  int attempts = 0;  // including this one
};

// Claims up to `limit` due deliveries (not delivered, not failed, next_attempt_at <= now()),
// oldest due first, skipping rows another transaction holds. Each claimed row gets
// attempts + 1 and next_attempt_at = now() + lease.
std::vector<ClaimedDelivery> claim_due_deliveries(pqxx::connection& c, std::size_t limit,
                                                  std::chrono::milliseconds lease);

// Marks the delivery delivered with the receiver's HTTP status. Returns false if it was already
// delivered or given up (e.g. another process re-sent it after our lease ran out).
bool record_delivered(pqxx::connection& c, std::int64_t id, int status);

enum class AttemptOutcome {
  retry_scheduled,  // due again after retry_in
  gave_up,          // failed_at set: the next attempt would have been after the give-up time
  stale,            // no change: the row was delivered, given up, or claimed again since `attempt`
};

// Records a failed attempt: `status` is the HTTP status received (0 when none: connection
// failure, timeout), `error` a short reason without secrets. The delivery becomes due again at
// now() + retry_in (database clock, so broker hosts' clocks do not matter), unless that is after
// its give-up time -- the earlier of the row's give_up_at and created_at + give_up_after -- in
// which case failed_at is set instead. `attempt` is the attempts value of our claim: a row claimed
// again since (by another process, after our lease expired) belongs to that claim and is left alone.
AttemptOutcome record_failed_attempt(pqxx::connection& c, std::int64_t id, int attempt, int status,
                                     const std::string& error, std::chrono::milliseconds retry_in,
                                     std::chrono::milliseconds give_up_after);

}  // namespace labelbroker::db
