#pragma once
// Small helpers the API tests share: a team's API key straight in the database, and the problem
// type of an error response.
#include <string>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "auth/api_key.hpp"
#include "db/team_store.hpp"
#include "support/http_client.hpp"

namespace labelbroker::testing {

// Creates the team if needed and a key with `role` for it; returns the key in plain text.
inline std::string make_key(const std::string& url, const std::string& team, auth::Role role) {
  pqxx::connection c(url);
  auto [record, created] = db::ensure_team(c, team);
  auto key = auth::generate_api_key();
  db::insert_api_key(c, record.id, key.prefix, key.secret_hash, std::string(auth::to_string(role)));
  return key.plaintext;
}

// The `type` of a problem+json body ("" when the body is not one).
inline std::string problem_type(const HttpResult& r) {
  auto body = nlohmann::json::parse(r.body, nullptr, false);
  return body.is_object() && body.contains("type") ? body["type"].get<std::string>() : "";
}

}  // namespace labelbroker::testing
