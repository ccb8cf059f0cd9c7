#include "auth/api_key.hpp"

#include "common/crypto.hpp"

namespace labelbroker::auth {
namespace {

constexpr std::size_t kPrefixHex = 12;
constexpr std::size_t kSecretHex = 40;

bool is_lower_hex(std::string_view s) {
  return s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

}  // namespace

std::string_view to_string(Role role) {
  switch (role) {
    case Role::viewer:
      return "viewer";
    case Role::submitter:
      return "submitter";
    case Role::admin:
      return "admin";
  }
  return "viewer";
}

std::optional<Role> parse_role(std::string_view text) {
  for (Role r : {Role::viewer, Role::submitter, Role::admin})
    if (to_string(r) == text) return r;
  return std::nullopt;
}

bool role_allows(Role have, Role need) {
  return static_cast<int>(have) >= static_cast<int>(need);
}

GeneratedKey generate_api_key() {
  GeneratedKey key;
  key.prefix = common::random_hex(kPrefixHex / 2);
  const std::string secret = common::random_hex(kSecretHex / 2);
  key.plaintext = "lbk_" + key.prefix + "_" + secret;
  key.secret_hash = hash_secret(secret);
  return key;
}

std::optional<ParsedKey> parse_api_key(std::string_view text) {
  if (text.size() != 4 + kPrefixHex + 1 + kSecretHex || text.substr(0, 4) != "lbk_" || text[4 + kPrefixHex] != '_')
    return std::nullopt;
  ParsedKey key{std::string(text.substr(4, kPrefixHex)), std::string(text.substr(5 + kPrefixHex))};
  if (!is_lower_hex(key.prefix) || !is_lower_hex(key.secret)) return std::nullopt;
  return key;
}

std::string hash_secret(std::string_view secret) {
  return common::sha256_hex(secret);
}

}  // namespace labelbroker::auth
