#include "db/team_store.hpp"

#include <pqxx/pqxx>

namespace labelbroker::db {

std::pair<TeamRecord, bool> ensure_team(pqxx::connection& connection, const std::string& name) {
  pqxx::work tx(connection);
  auto inserted =
      tx.exec_params("INSERT INTO teams (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id, name", name);
  if (!inserted.empty()) {
    TeamRecord team{inserted[0][0].as<std::int64_t>(), inserted[0][1].as<std::string>()};
    tx.commit();
    return {team, true};
  }
  auto row = tx.exec_params1("SELECT id, name FROM teams WHERE name = $1", name);
  tx.commit();
  return {TeamRecord{row[0].as<std::int64_t>(), row[1].as<std::string>()}, false};
}

std::optional<TeamRecord> find_team(pqxx::connection& connection, const std::string& name) {
  pqxx::nontransaction tx(connection);
  auto rows = tx.exec_params("SELECT id, name FROM teams WHERE name = $1", name);
  if (rows.empty()) return std::nullopt;
  return TeamRecord{rows[0][0].as<std::int64_t>(), rows[0][1].as<std::string>()};
}

std::optional<std::string> team_webhook_secret(pqxx::connection& connection, std::int64_t team_id) {
  pqxx::nontransaction tx(connection);
  auto rows = tx.exec_params("SELECT webhook_secret FROM teams WHERE id = $1", team_id);
  if (rows.empty()) return std::nullopt;
  return rows[0][0].as<std::string>();
}

std::int64_t insert_api_key(pqxx::connection& connection, std::int64_t team_id, const std::string& prefix,
                            const std::string& secret_hash, const std::string& role) {
  pqxx::work tx(connection);
  auto row =
      tx.exec_params1("INSERT INTO api_keys (team_id, prefix, secret_hash, role) VALUES ($1, $2, $3, $4) RETURNING id",
                      team_id, prefix, secret_hash, role);
  tx.commit();
  return row[0].as<std::int64_t>();
}

std::optional<KeyRecord> find_active_key(pqxx::connection& connection, const std::string& prefix) {
  pqxx::nontransaction tx(connection);
  auto rows = tx.exec_params(
      "SELECT k.id, k.team_id, t.name, k.role, k.secret_hash, k.prefix, k.rate_per_second, k.rate_burst "
      "FROM api_keys k JOIN teams t ON t.id = k.team_id "
      "WHERE k.prefix = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())",
      prefix);
  if (rows.empty()) return std::nullopt;
  const auto& r = rows[0];
  KeyRecord key{r[0].as<std::int64_t>(), r[1].as<std::int64_t>(), r[2].as<std::string>(), r[3].as<std::string>(),
                r[4].as<std::string>(), r[5].as<std::string>(), std::nullopt, std::nullopt};
  if (!r[6].is_null()) {
    key.rate_per_second = r[6].as<double>();
    key.rate_burst = r[7].as<int>();
  }
  return key;
}

RateTokens take_rate_tokens(pqxx::connection& connection, std::int64_t key_id, double per_second, int burst,
                            int wanted) {
  pqxx::nontransaction tx(connection);
  auto row = tx.exec_params1("SELECT granted, tokens_left FROM take_rate_tokens($1, $2, $3, $4)", key_id, per_second,
                             burst, wanted);
  return {row[0].as<int>(), row[1].as<double>()};
}

void touch_key(pqxx::connection& connection, std::int64_t key_id) {
  pqxx::nontransaction tx(connection);
  tx.exec_params0(
      "UPDATE api_keys SET last_used_at = now() WHERE id = $1 "
      "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
      key_id);
}

}  // namespace labelbroker::db
