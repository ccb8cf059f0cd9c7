#pragma once
// What admins change (teams, API keys, vendor settings) and the audit trail of those changes
// (schema/0007). Every change here writes its audit row in the same transaction as the change,
// so the trail is exactly the changes that committed. Parameterised SQL only.
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/connection>
#include <pqxx/transaction>

namespace labelbroker::db {

// Who made a change: an API key (its id, public prefix and team) or the admin CLI (the OS user).
struct AuditActor {
  std::string type = "api_key";  // api_key | cli
  std::optional<std::int64_t> key_id;
  std::optional<std::string> key_prefix, team, name;
};

struct AuditContext {
  AuditActor actor;
  std::optional<std::string> request_id;
};

// Appends one audit row inside the caller's transaction.
void append_audit(pqxx::work& tx, const AuditContext& context, const std::string& action,
                  const std::string& target_type, const std::string& target_id, const nlohmann::json& before,
                  const nlohmann::json& after);

// ---- teams -----------------------------------------------------------------------------------

struct TeamView {
  std::int64_t id = 0;
  std::string name;
  std::string created_at;  // RFC 3339
  std::optional<std::int64_t> monthly_budget_micros;
  std::vector<std::string> denied_vendors;
};
// The API's view of a team, which its audit entries also hold.
nlohmann::json to_json(const TeamView& team);

struct NewTeam {
  std::string name;
  std::optional<std::int64_t> monthly_budget_micros;
  std::vector<std::string> denied_vendors;
};
// nullopt when a team of that name exists (nothing is written then).
std::optional<TeamView> create_team(pqxx::connection& c, const NewTeam& team, const AuditContext& audit);

// Changes the given fields of the team; nullopt when there is no such team.
struct TeamChange {
  std::optional<std::optional<std::int64_t>> monthly_budget_micros;  // set: new value (nullopt: no cap)
  std::optional<std::vector<std::string>> denied_vendors;
};
std::optional<TeamView> update_team(pqxx::connection& c, const std::string& name, const TeamChange& change,
                                    const AuditContext& audit);

// Teams in id order after `after_id`, at most `limit`.
std::vector<TeamView> list_teams(pqxx::connection& c, std::int64_t after_id, std::size_t limit);

// ---- API keys ----------------------------------------------------------------------------------

struct RateLimit {
  double requests_per_second = 0;
  int burst = 0;
};

struct KeyView {
  std::int64_t id = 0;
  std::string prefix, team, role;
  std::optional<std::string> label;
  std::string created_at;
  std::optional<std::string> last_used_at, expires_at, revoked_at;
  std::optional<RateLimit> rate_limit;
  std::optional<std::int64_t> replaces;
};
// The API's view of a key, which its audit entries also hold; never the secret (the view has none).
nlohmann::json to_json(const KeyView& key);

struct NewKey {
  std::int64_t team_id = 0;
  std::string prefix, secret_hash, role;
  std::optional<std::string> label;
  std::optional<RateLimit> rate_limit;
};
KeyView create_key(pqxx::connection& c, const NewKey& key, const AuditContext& audit);

struct KeyFilter {
  std::optional<std::int64_t> team_id;
  bool include_revoked = false;
  std::int64_t after_id = 0;
  std::size_t limit = 100;
};
std::vector<KeyView> list_keys(pqxx::connection& c, const KeyFilter& filter);

// Revokes the key now (a key already revoked keeps its first revocation time and is not audited
// again); nullopt when there is no such key.
std::optional<KeyView> revoke_key(pqxx::connection& c, std::int64_t key_id, const AuditContext& audit);

// Rotation: a new key with the old one's team, role, label and rate limit; the old key expires
// `grace_seconds` from now (0: at once), so clients can switch over without an outage.
enum class RotateRefusal { not_found, revoked };
struct Rotated {
  KeyView created, replaced;
};
std::variant<Rotated, RotateRefusal> rotate_key(pqxx::connection& c, std::int64_t key_id, int grace_seconds,
                                               const std::string& new_prefix, const std::string& new_secret_hash,
                                               const AuditContext& audit);

// ---- vendors -----------------------------------------------------------------------------------

struct VendorOverride {
  std::optional<bool> enabled;  // nullopt: as configured
  std::optional<double> weight;
};
// Sets the given override fields (others unchanged), audited; returns the stored row.
VendorOverride update_vendor_override(pqxx::connection& c, const std::string& vendor_id, std::optional<bool> enabled,
                                      std::optional<double> weight, const AuditContext& audit);

// ---- the trail ---------------------------------------------------------------------------------

struct AuditEntry {
  std::int64_t id = 0;
  std::string at;
  AuditActor actor;
  std::string action, target_type, target_id;
  nlohmann::json before, after;  // null when absent
  std::optional<std::string> request_id;
};

struct AuditFilter {
  std::optional<std::string> action;
  std::optional<std::string> since;  // RFC 3339, validated by the caller
  std::int64_t before_id = 0;        // newest first: entries with a smaller id (0: from the newest)
  std::size_t limit = 100;
};
std::vector<AuditEntry> list_audit(pqxx::connection& c, const AuditFilter& filter);

}  // namespace labelbroker::db
