#include "api/admin_routes.hpp"

#include <charconv>
#include <set>

#include <nlohmann/json.hpp>

#include "api/auth.hpp"
#include "api/paging.hpp"
#include "auth/api_key.hpp"
#include "common/money.hpp"
#include "common/strings.hpp"
#include "common/time.hpp"
#include "db/admin_store.hpp"
#include "db/team_store.hpp"
#include "http/problem.hpp"

namespace labelbroker::api {
namespace {

using json = nlohmann::json;

constexpr std::size_t kDefaultPage = 100;
constexpr std::size_t kMaxPage = 500;
constexpr int kMaxGraceSeconds = 86400;

json or_null(const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); }

// The plaintext key is in this response and nowhere else, ever: no cache may keep it.
http::Response with_secret(int status, const json& body) {
  auto r = http::Response::json(status, body.dump());
  r.headers.set("Cache-Control", "no-store");
  return r;
}

// Keyset cursors over bigint ids.
std::optional<std::int64_t> cursor_id(const http::Request& request, bool& bad) {
  bad = false;
  auto text = request.query_param("cursor");
  if (!text) return std::nullopt;
  auto raw = decode_cursor(*text);
  auto id = raw ? common::parse_uint(*raw) : std::nullopt;
  if (!id || *id == 0 || *id > static_cast<std::uint64_t>(INT64_MAX)) {
    bad = true;
    return std::nullopt;
  }
  return static_cast<std::int64_t>(*id);
}

std::optional<std::int64_t> path_id(const http::Request& request) {
  auto id = common::parse_uint(request.path_param("id"));
  if (!id || *id == 0 || *id > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
  return static_cast<std::int64_t>(*id);
}

http::Response key_not_found(const http::Request& request) {
  return http::problem(404, "not-found", "Not found", "no API key with id " + std::string(request.path_param("id")));
}

std::optional<json> parse_object(const http::Request& request, bool empty_is_object, http::Response& error) {
  if (empty_is_object && request.body.empty()) return json::object();
  auto body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    error = http::problem(400, "invalid-json", "Invalid JSON", "the body is not valid JSON");
    return std::nullopt;
  }
  return body;
}

// ---- teams ----

http::Response create_team(db::ConnectionPool& pool, http::Request& request, const Caller& caller) {
  http::Response error;
  auto body = parse_object(request, false, error);
  if (!body) return error;
  std::vector<http::FieldError> errors;
  db::NewTeam team;
  bool has_name = false;
  if (!body->is_object()) {
    errors.push_back({"", "must be an object"});
  } else {
    for (const auto& [key, value] : body->items()) {
      const auto pointer = "/" + http::json_pointer_escape(key);
      if (key == "name") {
        has_name = value.is_string() && common::is_slug(value.get<std::string>());
        if (has_name)
          team.name = value.get<std::string>();
        else
          errors.push_back({pointer, "1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"});
      } else if (key == "monthly_budget_usd") {
        if (value.is_null()) continue;
        auto micros = value.is_string() ? common::parse_usd_micros(value.get<std::string>()) : std::nullopt;
        if (micros)
          team.monthly_budget_micros = *micros;
        else
          errors.push_back({pointer, "a decimal string of US dollars such as \"2500.00\", or null"});
      } else if (key == "denied_vendors") {
        if (!value.is_array()) {
          errors.push_back({pointer, "must be an array of vendor ids"});
          continue;
        }
        std::set<std::string> seen;
        for (std::size_t i = 0; i < value.size(); ++i) {
          const auto& id = value[i];
          if (!id.is_string() || !common::is_slug(id.get<std::string>()))
            errors.push_back({pointer + "/" + std::to_string(i), "not a vendor id"});
          else if (seen.insert(id.get<std::string>()).second)
            team.denied_vendors.push_back(id.get<std::string>());
        }
      } else {
        errors.push_back({pointer, "unknown field (name, monthly_budget_usd, denied_vendors)"});
      }
    }
    if (!has_name && !body->contains("name")) errors.push_back({"/name", "required"});
  }
  if (!errors.empty())
    return http::problem(422, "invalid-team", "Invalid team", "The team is not valid.", errors);
  auto created = pool.run([&](pqxx::connection& c) { return db::create_team(c, team, audit_context(caller, request)); });
  if (!created)
    return http::problem(409, "team-exists", "Team exists", "a team named \"" + team.name + "\" already exists");
  return http::Response::json(201, db::to_json(*created).dump());
}

http::Response list_teams(db::ConnectionPool& pool, const http::Request& request) {
  if (auto bad = reject_unknown_params(request, {"limit", "cursor"})) return *bad;
  auto limit = page_size(request, kDefaultPage, kMaxPage);
  if (!limit) return bad_query("limit must be an integer from 1 to " + std::to_string(kMaxPage));
  bool bad_cursor = false;
  const auto after = cursor_id(request, bad_cursor);
  if (bad_cursor) return bad_query("cursor must be a next_cursor of an earlier page");
  auto teams = pool.run([&](pqxx::connection& c) { return db::list_teams(c, after.value_or(0), *limit + 1); });
  json next = nullptr;
  if (teams.size() > *limit) {
    teams.resize(*limit);
    next = encode_cursor(std::to_string(teams.back().id));
  }
  json list = json::array();
  for (const auto& t : teams) list.push_back(db::to_json(t));
  return http::Response::json(200, json{{"teams", list}, {"next_cursor", next}}.dump());
}

// ---- keys ----

http::Response create_key(db::ConnectionPool& pool, http::Request& request, const Caller& caller) {
  http::Response error;
  auto body = parse_object(request, false, error);
  if (!body) return error;
  std::vector<http::FieldError> errors;
  std::optional<std::string> team_name, role, label;
  std::optional<db::RateLimit> rate_limit;
  if (!body->is_object()) {
    errors.push_back({"", "must be an object"});
  } else {
    for (const auto& [key, value] : body->items()) {
      const auto pointer = "/" + http::json_pointer_escape(key);
      if (key == "team") {
        if (value.is_string() && common::is_slug(value.get<std::string>()))
          team_name = value.get<std::string>();
        else
          errors.push_back({pointer, "must be a team name"});
      } else if (key == "role") {
        if (value.is_string() && auth::parse_role(value.get<std::string>()))
          role = value.get<std::string>();
        else
          errors.push_back({pointer, "must be viewer, submitter or admin"});
      } else if (key == "label") {
        if (value.is_null()) continue;
        if (value.is_string() && value.get<std::string>().size() <= 100)
          label = value.get<std::string>();
        else
          errors.push_back({pointer, "a string of at most 100 characters, or null"});
      } else if (key == "rate_limit") {
        if (value.is_null()) continue;
        const bool ok = value.is_object() && value.size() == 2 && value.contains("requests_per_second") &&
                        value.contains("burst") && value["requests_per_second"].is_number() &&
                        value["requests_per_second"].get<double>() > 0 &&
                        value["requests_per_second"].get<double>() <= 1e6 &&
                        value["burst"].is_number_integer() && value["burst"].get<std::int64_t>() >= 1 &&
                        value["burst"].get<std::int64_t>() <= 10000000;
        if (ok)
          rate_limit = db::RateLimit{value["requests_per_second"].get<double>(), value["burst"].get<int>()};
        else
          errors.push_back({pointer,
                            "{\"requests_per_second\": number in (0, 1000000], \"burst\": integer from 1}, or null"});
      } else {
        errors.push_back({pointer, "unknown field (team, role, label, rate_limit)"});
      }
    }
    if (!body->contains("team")) errors.push_back({"/team", "required"});
    if (!body->contains("role")) errors.push_back({"/role", "required"});
  }
  std::optional<db::TeamRecord> team;
  if (errors.empty()) {
    team = pool.run([&](pqxx::connection& c) { return db::find_team(c, *team_name); });
    if (!team) errors.push_back({"/team", "no team named \"" + *team_name + "\""});
  }
  if (!errors.empty())
    return http::problem(422, "invalid-key-request", "Invalid key request", "The key request is not valid.", errors);
  const auto generated = auth::generate_api_key();
  db::NewKey key{team->id, generated.prefix, generated.secret_hash, *role, label, rate_limit};
  auto created = pool.run([&](pqxx::connection& c) { return db::create_key(c, key, audit_context(caller, request)); });
  auto out = db::to_json(created);
  out["key"] = generated.plaintext;
  return with_secret(201, out);
}

http::Response list_keys(db::ConnectionPool& pool, const http::Request& request) {
  if (auto bad = reject_unknown_params(request, {"team", "include_revoked", "limit", "cursor"})) return *bad;
  auto limit = page_size(request, kDefaultPage, kMaxPage);
  if (!limit) return bad_query("limit must be an integer from 1 to " + std::to_string(kMaxPage));
  bool bad_cursor = false;
  db::KeyFilter filter;
  filter.after_id = cursor_id(request, bad_cursor).value_or(0);
  if (bad_cursor) return bad_query("cursor must be a next_cursor of an earlier page");
  filter.limit = *limit + 1;
  if (auto revoked = request.query_param("include_revoked")) {
    if (*revoked != "true" && *revoked != "false") return bad_query("include_revoked must be true or false");
    filter.include_revoked = *revoked == "true";
  }
  if (auto team_name = request.query_param("team")) {
    auto team = pool.run([&](pqxx::connection& c) { return db::find_team(c, std::string(*team_name)); });
    if (!team) return bad_query("no team named \"" + std::string(*team_name) + "\"");
    filter.team_id = team->id;
  }
  auto keys = pool.run([&](pqxx::connection& c) { return db::list_keys(c, filter); });
  json next = nullptr;
  if (keys.size() > *limit) {
    keys.resize(*limit);
    next = encode_cursor(std::to_string(keys.back().id));
  }
  json list = json::array();
  for (const auto& k : keys) list.push_back(db::to_json(k));
  return http::Response::json(200, json{{"keys", list}, {"next_cursor", next}}.dump());
}

http::Response revoke_key(db::ConnectionPool& pool, http::Request& request, const Caller& caller) {
  auto id = path_id(request);
  if (!id) return key_not_found(request);
  auto revoked = pool.run([&](pqxx::connection& c) { return db::revoke_key(c, *id, audit_context(caller, request)); });
  if (!revoked) return key_not_found(request);
  // This process stops accepting it at once; the others within auth.key_cache_ms.
  shared_key_cache().clear();
  return http::Response::json(200, db::to_json(*revoked).dump());
}

http::Response rotate_key(db::ConnectionPool& pool, http::Request& request, const Caller& caller) {
  auto id = path_id(request);
  if (!id) return key_not_found(request);
  http::Response error;
  auto body = parse_object(request, true, error);
  if (!body) return error;
  std::vector<http::FieldError> errors;
  int grace = 0;
  if (!body->is_object()) {
    errors.push_back({"", "must be an object"});
  } else {
    for (const auto& [key, value] : body->items()) {
      const auto pointer = "/" + http::json_pointer_escape(key);
      if (key == "grace_seconds") {
        if (value.is_number_integer() && value.get<std::int64_t>() >= 0 && value.get<std::int64_t>() <= kMaxGraceSeconds)
          grace = value.get<int>();
        else
          errors.push_back({pointer, "an integer from 0 to " + std::to_string(kMaxGraceSeconds)});
      } else {
        errors.push_back({pointer, "unknown field (grace_seconds)"});
      }
    }
  }
  if (!errors.empty())
    return http::problem(422, "invalid-key-request", "Invalid key request", "The rotation is not valid.", errors);
  const auto generated = auth::generate_api_key();
  auto outcome = pool.run([&](pqxx::connection& c) {
    return db::rotate_key(c, *id, grace, generated.prefix, generated.secret_hash, audit_context(caller, request));
  });
  if (auto* refusal = std::get_if<db::RotateRefusal>(&outcome)) {
    if (*refusal == db::RotateRefusal::not_found) return key_not_found(request);
    return http::problem(409, "key-revoked", "Key revoked",
                         "API key " + std::to_string(*id) + " is revoked or expired; create a new key instead");
  }
  const auto& rotated = std::get<db::Rotated>(outcome);
  shared_key_cache().clear();
  auto out = db::to_json(rotated.created);
  out["key"] = generated.plaintext;
  out["replaced"] = db::to_json(rotated.replaced);
  return with_secret(201, out);
}

// ---- audit ----

json actor_json(const db::AuditActor& a) {
  return {{"type", a.type},
          {"key_id", a.key_id ? json(*a.key_id) : json(nullptr)},
          {"key_prefix", or_null(a.key_prefix)},
          {"team", or_null(a.team)},
          {"name", or_null(a.name)}};
}

http::Response list_audit(db::ConnectionPool& pool, const http::Request& request) {
  if (auto bad = reject_unknown_params(request, {"action", "since", "limit", "cursor"})) return *bad;
  auto limit = page_size(request, kDefaultPage, kMaxPage);
  if (!limit) return bad_query("limit must be an integer from 1 to " + std::to_string(kMaxPage));
  bool bad_cursor = false;
  db::AuditFilter filter;
  filter.before_id = cursor_id(request, bad_cursor).value_or(0);
  if (bad_cursor) return bad_query("cursor must be a next_cursor of an earlier page");
  filter.limit = *limit + 1;
  if (auto action = request.query_param("action")) filter.action = std::string(*action);
  if (auto since = request.query_param("since")) {
    if (!common::parse_rfc3339(*since))
      return bad_query("since must be an RFC 3339 time such as 2026-11-28T00:00:00Z");
    filter.since = std::string(*since);
  }
  auto entries = pool.run([&](pqxx::connection& c) { return db::list_audit(c, filter); });
  json next = nullptr;
  if (entries.size() > *limit) {
    entries.resize(*limit);
    next = encode_cursor(std::to_string(entries.back().id));
  }
  json list = json::array();
  for (const auto& e : entries)
    list.push_back({{"id", e.id},
                    {"at", e.at},
                    {"actor", actor_json(e.actor)},
                    {"action", e.action},
                    {"target", {{"type", e.target_type}, {"id", e.target_id}}},
                    {"before", e.before},
                    {"after", e.after},
                    {"request_id", or_null(e.request_id)}});
  return http::Response::json(200, json{{"entries", list}, {"next_cursor", next}}.dump());
}

}  // namespace

void register_admin_routes(http::Router& router, db::ConnectionPool& pool) {
  using auth::Role;
  router.add("POST", "/v1/teams", require_role(pool, Role::admin, [&pool](http::Request& r, const Caller& c) {
               return create_team(pool, r, c);
             }));
  router.add("GET", "/v1/teams", require_role(pool, Role::admin, [&pool](http::Request& r, const Caller&) {
               return list_teams(pool, r);
             }));
  router.add("POST", "/v1/keys", require_role(pool, Role::admin, [&pool](http::Request& r, const Caller& c) {
               return create_key(pool, r, c);
             }));
  router.add("GET", "/v1/keys", require_role(pool, Role::admin, [&pool](http::Request& r, const Caller&) {
               return list_keys(pool, r);
             }));
  router.add("DELETE", "/v1/keys/{id}", require_role(pool, Role::admin, [&pool](http::Request& r, const Caller& c) {
               return revoke_key(pool, r, c);
             }));
  router.add("POST", "/v1/keys/{id}/rotate",
             require_role(pool, Role::admin, [&pool](http::Request& r, const Caller& c) {
               return rotate_key(pool, r, c);
             }));
  router.add("GET", "/v1/audit", require_role(pool, Role::admin, [&pool](http::Request& r, const Caller&) {
               return list_audit(pool, r);
             }));
}

}  // namespace labelbroker::api
