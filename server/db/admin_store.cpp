#include "db/admin_store.hpp"

#include <pqxx/pqxx>

#include "common/money.hpp"
#include "db/sql_time.hpp"

namespace labelbroker::db {
namespace {

using json = nlohmann::json;

std::optional<std::string> optional_text(const pqxx::field& f) {
  return f.is_null() ? std::nullopt : std::optional<std::string>(f.as<std::string>());
}

json optional_json(const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); }

// ---- teams ----

const std::string kTeamColumns = "t.id, t.name, " + rfc3339_sql("t.created_at") +
                                 ", t.monthly_budget_micros, array_to_json(t.denied_vendors)::text";

TeamView team_from(const pqxx::row& r) {
  TeamView t;
  t.id = r[0].as<std::int64_t>();
  t.name = r[1].as<std::string>();
  t.created_at = r[2].as<std::string>();
  if (!r[3].is_null()) t.monthly_budget_micros = r[3].as<std::int64_t>();
  for (const auto& v : json::parse(r[4].c_str())) t.denied_vendors.push_back(v.get<std::string>());
  return t;
}

std::optional<TeamView> read_team(pqxx::work& tx, const std::string& name, bool lock) {
  auto rows = tx.exec_params("SELECT " + kTeamColumns + " FROM teams t WHERE t.name = $1" +
                                 (lock ? " FOR UPDATE" : ""),
                             name);
  if (rows.empty()) return std::nullopt;
  return team_from(rows[0]);
}

// ---- keys ----

const std::string kKeyColumns = "k.id, k.prefix, t.name, k.role, k.label, " + rfc3339_sql("k.created_at") + ", " +
                                rfc3339_sql("k.last_used_at") + ", " + rfc3339_sql("k.expires_at") + ", " +
                                rfc3339_sql("k.revoked_at") + ", k.rate_per_second, k.rate_burst, k.replaces, " +
                                "coalesce(k.expires_at <= now(), false)";
const std::string kKeyFrom = " FROM api_keys k JOIN teams t ON t.id = k.team_id ";

KeyView key_from(const pqxx::row& r) {
  KeyView k;
  k.id = r[0].as<std::int64_t>();
  k.prefix = r[1].as<std::string>();
  k.team = r[2].as<std::string>();
  k.role = r[3].as<std::string>();
  k.label = optional_text(r[4]);
  k.created_at = r[5].as<std::string>();
  k.last_used_at = optional_text(r[6]);
  k.expires_at = optional_text(r[7]);
  k.revoked_at = optional_text(r[8]);
  if (!r[9].is_null()) k.rate_limit = RateLimit{r[9].as<double>(), r[10].as<int>()};
  if (!r[11].is_null()) k.replaces = r[11].as<std::int64_t>();
  // A key is usable until it is revoked or its expiry passes; revoked_at is what the API shows,
  // so an expired key reads as revoked at its expiry.
  if (!k.revoked_at && r[12].as<bool>()) k.revoked_at = k.expires_at;
  return k;
}

std::optional<KeyView> read_key(pqxx::work& tx, std::int64_t id, bool lock) {
  auto rows = tx.exec_params("SELECT " + kKeyColumns + kKeyFrom + "WHERE k.id = $1" + (lock ? " FOR UPDATE OF k" : ""),
                             id);
  if (rows.empty()) return std::nullopt;
  return key_from(rows[0]);
}

json override_json(const std::optional<bool>& enabled, const std::optional<double>& weight) {
  return {{"enabled", enabled ? json(*enabled) : json(nullptr)}, {"weight", weight ? json(*weight) : json(nullptr)}};
}

}  // namespace

void append_audit(pqxx::work& tx, const AuditContext& context, const std::string& action,
                  const std::string& target_type, const std::string& target_id, const json& before,
                  const json& after) {
  const auto& a = context.actor;
  tx.exec_params0(
      "INSERT INTO audit_log (actor_type, actor_key_id, actor_key_prefix, actor_team, actor_name, action, "
      "  target_type, target_id, before, after, request_id) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11)",
      a.type, a.key_id, a.key_prefix, a.team, a.name, action, target_type, target_id,
      before.is_null() ? std::optional<std::string>() : std::optional<std::string>(before.dump()),
      after.is_null() ? std::optional<std::string>() : std::optional<std::string>(after.dump()), context.request_id);
}

json to_json(const TeamView& t) {
  return {{"id", t.id},
          {"name", t.name},
          {"created_at", t.created_at},
          {"monthly_budget_usd", t.monthly_budget_micros ? json(common::format_usd(*t.monthly_budget_micros)) : json(nullptr)},
          {"denied_vendors", t.denied_vendors}};
}

json to_json(const KeyView& k) {
  return {{"id", k.id},
          {"prefix", k.prefix},
          {"team", k.team},
          {"role", k.role},
          {"label", optional_json(k.label)},
          {"created_at", k.created_at},
          {"last_used_at", optional_json(k.last_used_at)},
          {"expires_at", optional_json(k.expires_at)},
          {"revoked_at", optional_json(k.revoked_at)},
          {"rate_limit", k.rate_limit ? json{{"requests_per_second", k.rate_limit->requests_per_second},
                                             {"burst", k.rate_limit->burst}}
                                      : json(nullptr)},
          {"replaces", k.replaces ? json(*k.replaces) : json(nullptr)}};
}

std::optional<TeamView> create_team(pqxx::connection& c, const NewTeam& team, const AuditContext& audit) {
  pqxx::work tx(c);
  auto rows = tx.exec_params(
      "INSERT INTO teams (name, monthly_budget_micros, denied_vendors) "
      "VALUES ($1, $2, ARRAY(SELECT jsonb_array_elements_text($3::jsonb))) ON CONFLICT (name) DO NOTHING RETURNING id",
      team.name, team.monthly_budget_micros, json(team.denied_vendors).dump());
  if (rows.empty()) return std::nullopt;
  auto created = read_team(tx, team.name, false);
  append_audit(tx, audit, "team.create", "team", team.name, nullptr, to_json(*created));
  tx.commit();
  return created;
}

std::optional<TeamView> update_team(pqxx::connection& c, const std::string& name, const TeamChange& change,
                                    const AuditContext& audit) {
  pqxx::work tx(c);
  auto before = read_team(tx, name, true);
  if (!before) return std::nullopt;
  if (change.monthly_budget_micros)
    tx.exec_params0("UPDATE teams SET monthly_budget_micros = $2 WHERE id = $1", before->id,
                    *change.monthly_budget_micros);
  if (change.denied_vendors)
    tx.exec_params0("UPDATE teams SET denied_vendors = ARRAY(SELECT jsonb_array_elements_text($2::jsonb)) WHERE id = $1",
                    before->id, json(*change.denied_vendors).dump());
  auto after = read_team(tx, name, false);
  append_audit(tx, audit, "team.update", "team", name, to_json(*before), to_json(*after));
  tx.commit();
  return after;
}

std::vector<TeamView> list_teams(pqxx::connection& c, std::int64_t after_id, std::size_t limit) {
  pqxx::read_transaction tx(c);
  std::vector<TeamView> out;
  for (const auto& r : tx.exec_params("SELECT " + kTeamColumns + " FROM teams t WHERE t.id > $1 ORDER BY t.id LIMIT $2",
                                      after_id, static_cast<std::int64_t>(limit)))
    out.push_back(team_from(r));
  return out;
}

KeyView create_key(pqxx::connection& c, const NewKey& key, const AuditContext& audit) {
  pqxx::work tx(c);
  const auto id = tx.exec_params1(
                        "INSERT INTO api_keys (team_id, prefix, secret_hash, role, label, rate_per_second, rate_burst) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                        key.team_id, key.prefix, key.secret_hash, key.role, key.label,
                        key.rate_limit ? std::optional<double>(key.rate_limit->requests_per_second) : std::nullopt,
                        key.rate_limit ? std::optional<int>(key.rate_limit->burst) : std::nullopt)[0]
                      .as<std::int64_t>();
  auto created = read_key(tx, id, false);
  append_audit(tx, audit, "key.create", "api_key", std::to_string(id), nullptr, to_json(*created));
  tx.commit();
  return *created;
}

std::vector<KeyView> list_keys(pqxx::connection& c, const KeyFilter& filter) {
  pqxx::read_transaction tx(c);
  std::vector<KeyView> out;
  for (const auto& r : tx.exec_params(
           "SELECT " + kKeyColumns + kKeyFrom +
               "WHERE k.id > $1 AND ($2::bigint IS NULL OR k.team_id = $2) "
               "AND ($3 OR (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()))) "
               "ORDER BY k.id LIMIT $4",
           filter.after_id, filter.team_id, filter.include_revoked, static_cast<std::int64_t>(filter.limit)))
    out.push_back(key_from(r));
  return out;
}

std::optional<KeyView> revoke_key(pqxx::connection& c, std::int64_t key_id, const AuditContext& audit) {
  pqxx::work tx(c);
  auto before = read_key(tx, key_id, true);
  if (!before) return std::nullopt;
  if (before->revoked_at) {
    tx.commit();
    return before;
  }
  tx.exec_params0("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id);
  auto after = read_key(tx, key_id, false);
  append_audit(tx, audit, "key.revoke", "api_key", std::to_string(key_id), to_json(*before), to_json(*after));
  tx.commit();
  return after;
}

std::variant<Rotated, RotateRefusal> rotate_key(pqxx::connection& c, std::int64_t key_id, int grace_seconds,
                                               const std::string& new_prefix, const std::string& new_secret_hash,
                                               const AuditContext& audit) {
  pqxx::work tx(c);
  auto old_key = read_key(tx, key_id, true);
  if (!old_key) return RotateRefusal::not_found;
  if (old_key->revoked_at) return RotateRefusal::revoked;
  const auto new_id =
      tx.exec_params1(
            "INSERT INTO api_keys (team_id, prefix, secret_hash, role, label, rate_per_second, rate_burst, replaces) "
            "SELECT team_id, $2, $3, role, label, rate_per_second, rate_burst, id FROM api_keys WHERE id = $1 "
            "RETURNING id",
            key_id, new_prefix, new_secret_hash)[0]
          .as<std::int64_t>();
  // An expiry never moves later: a key already expiring sooner keeps its earlier end.
  tx.exec_params0(
      "UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $2)) "
      "WHERE id = $1",
      key_id, grace_seconds);
  Rotated out{*read_key(tx, new_id, false), *read_key(tx, key_id, false)};
  append_audit(tx, audit, "key.rotate", "api_key", std::to_string(key_id), to_json(*old_key),
               {{"replaced", to_json(out.replaced)}, {"created", to_json(out.created)}});
  tx.commit();
  return out;
}

VendorOverride update_vendor_override(pqxx::connection& c, const std::string& vendor_id, std::optional<bool> enabled,
                                      std::optional<double> weight, const AuditContext& audit) {
  pqxx::work tx(c);
  // Serialises concurrent changes of one vendor, so each audit row's "before" is the state the
  // change really replaced.
  tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended('labelbroker.vendor_settings:' || $1, 0))", vendor_id);
  json before = nullptr;
  auto old_rows = tx.exec_params("SELECT enabled, weight FROM vendor_settings WHERE vendor_id = $1", vendor_id);
  if (!old_rows.empty())
    before = override_json(old_rows[0][0].is_null() ? std::nullopt : std::optional<bool>(old_rows[0][0].as<bool>()),
                           old_rows[0][1].is_null() ? std::nullopt : std::optional<double>(old_rows[0][1].as<double>()));
  auto row = tx.exec_params1(
      "INSERT INTO vendor_settings (vendor_id, enabled, weight) VALUES ($1, $2, $3) "
      "ON CONFLICT (vendor_id) DO UPDATE SET enabled = coalesce($2, vendor_settings.enabled), "
      "  weight = coalesce($3, vendor_settings.weight), updated_at = now() "
      "RETURNING enabled, weight",
      vendor_id, enabled, weight);
  VendorOverride out;
  if (!row[0].is_null()) out.enabled = row[0].as<bool>();
  if (!row[1].is_null()) out.weight = row[1].as<double>();
  append_audit(tx, audit, "vendor.update", "vendor", vendor_id, before, override_json(out.enabled, out.weight));
  tx.commit();
  return out;
}

std::vector<AuditEntry> list_audit(pqxx::connection& c, const AuditFilter& filter) {
  pqxx::read_transaction tx(c);
  std::vector<AuditEntry> out;
  for (const auto& r : tx.exec_params(
           "SELECT id, " + rfc3339_sql("at") +
               ", actor_type, actor_key_id, actor_key_prefix, actor_team, actor_name, action, target_type, "
               "target_id, before::text, after::text, request_id FROM audit_log "
               "WHERE ($1::bigint = 0 OR id < $1) AND ($2::text IS NULL OR action = $2) "
               "AND ($3::timestamptz IS NULL OR at >= $3) ORDER BY id DESC LIMIT $4",
           filter.before_id, filter.action, filter.since, static_cast<std::int64_t>(filter.limit))) {
    AuditEntry e;
    e.id = r[0].as<std::int64_t>();
    e.at = r[1].as<std::string>();
    e.actor.type = r[2].as<std::string>();
    if (!r[3].is_null()) e.actor.key_id = r[3].as<std::int64_t>();
    e.actor.key_prefix = optional_text(r[4]);
    e.actor.team = optional_text(r[5]);
    e.actor.name = optional_text(r[6]);
    e.action = r[7].as<std::string>();
    e.target_type = r[8].as<std::string>();
    e.target_id = r[9].as<std::string>();
    e.before = r[10].is_null() ? json(nullptr) : json::parse(r[10].c_str());
    e.after = r[11].is_null() ? json(nullptr) : json::parse(r[11].c_str());
    e.request_id = optional_text(r[12]);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace labelbroker::db
