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
};

// Returns the team and whether this call created it.
std::pair<TeamRecord, bool> ensure_team(pqxx::connection& connection, const std::string& name);
std::optional<TeamRecord> find_team(pqxx::connection& connection, const std::string& name);

// The key the team's webhook events are signed with (teams.webhook_secret, schema/0002); nullopt
// if there is no such team. A secret: show it only to the team's operator, never log it.
// Caps the team's holds plus spend per UTC month (nullopt: no cap). Takes effect at the next claim.
void set_team_monthly_budget(pqxx::connection& connection, std::int64_t team_id, std::optional<std::int64_t> micros);

std::optional<std::string> team_webhook_secret(pqxx::connection& connection, std::int64_t team_id);

std::int64_t insert_api_key(pqxx::connection& connection, std::int64_t team_id, const std::string& prefix,
                            const std::string& secret_hash, const std::string& role);

// A key that exists and is not revoked.
std::optional<KeyRecord> find_active_key(pqxx::connection& connection, const std::string& prefix);

// Records use, at most once a minute per key (keeps hot keys from writing on every request).
void touch_key(pqxx::connection& connection, std::int64_t key_id);

}  // namespace labelbroker::db
