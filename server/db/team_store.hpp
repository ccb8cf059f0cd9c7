#pragma once
// Teams and API keys in PostgreSQL (schema/0001). Parameterised SQL only; callers hold the
// connection (a pool lease) and decide the transaction.
#include <cstdint>
#include <optional>
#include <string>

#include <pqxx/connection>

namespace labelbroker::db {

struct TeamRecord {
  std::int64_t id = 0;
  std::string name;
};

struct KeyRecord {
  std::int64_t key_id = 0;
  std::int64_t team_id = 0;
  std::string team_name;
  std::string role;
  std::string secret_hash;
  std::string prefix;
  // The key's own rate limit (schema/0007); nullopt: the configured default applies.
  std::optional<double> rate_per_second;
  std::optional<int> rate_burst;
};

// Returns the team and whether this call created it. Not audited: the service and the admin CLI
// change teams through db/admin_store.hpp; this is for test fixtures that set up a database.
std::pair<TeamRecord, bool> ensure_team(pqxx::connection& connection, const std::string& name);
std::optional<TeamRecord> find_team(pqxx::connection& connection, const std::string& name);

// The key the team's webhook events are signed with (teams.webhook_secret, schema/0002); nullopt
// if there is no such team. A secret: show it only to the team's operator, never log it.
std::optional<std::string> team_webhook_secret(pqxx::connection& connection, std::int64_t team_id);

// Not audited either (see ensure_team); admin_store.hpp's create_key is the audited way.
std::int64_t insert_api_key(pqxx::connection& connection, std::int64_t team_id, const std::string& prefix,
                            const std::string& secret_hash, const std::string& role);

// A key that exists, is not revoked and has not expired (a rotated key expires after its grace).
std::optional<KeyRecord> find_active_key(pqxx::connection& connection, const std::string& prefix);

// Takes up to `wanted` tokens from the key's shared rate-limit bucket (schema/0007), refilled at
// `per_second` up to `burst`; one round trip, atomic under the bucket row's lock.
struct RateTokens {
  int granted = 0;
  double tokens_left = 0;
};
RateTokens take_rate_tokens(pqxx::connection& connection, std::int64_t key_id, double per_second, int burst,
                            int wanted);

// Records use, at most once a minute per key (keeps hot keys from writing on every request).
void touch_key(pqxx::connection& connection, std::int64_t key_id);

}  // namespace labelbroker::db
