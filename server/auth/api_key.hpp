#pragma once
// API keys: generated once, shown once, stored only as a SHA-256 of their secret part.
//
// Format: "lbk_<prefix>_<secret>" with a 12-hex-digit public prefix (the lookup key in the
// database) and a 40-hex-digit secret (160 bits from the CSPRNG). The prefix lets operators
// identify a key in logs and lists without ever seeing the secret.
#include <optional>
#include <string>
#include <string_view>

namespace labelbroker::auth {

enum class Role { viewer, submitter, admin };

std::string_view to_string(Role role);
std::optional<Role> parse_role(std::string_view text);
// viewer < submitter < admin: a role may do what any lower role may.
bool role_allows(Role have, Role need);

struct GeneratedKey {
  std::string plaintext;  // give to the user once; never store or log
  std::string prefix;
  std::string secret_hash;
};
GeneratedKey generate_api_key();

struct ParsedKey {
  std::string prefix;
  std::string secret;
};
// nullopt for anything not shaped like a key (checked before any database lookup).
std::optional<ParsedKey> parse_api_key(std::string_view text);

std::string hash_secret(std::string_view secret);

}  // namespace labelbroker::auth
