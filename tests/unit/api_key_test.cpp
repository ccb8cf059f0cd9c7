#include "auth/api_key.hpp"

#include <catch2/catch.hpp>

using namespace labelbroker::auth;

TEST_CASE("api keys: generated keys parse back and only their hash is kept", "[auth]") {
  auto a = generate_api_key();
  auto b = generate_api_key();
  CHECK(a.plaintext != b.plaintext);
  CHECK(a.plaintext.rfind("lbk_" + a.prefix + "_", 0) == 0);
  CHECK(a.plaintext.size() == 57);
  auto parsed = parse_api_key(a.plaintext);
  REQUIRE(parsed);
  CHECK(parsed->prefix == a.prefix);
  CHECK(hash_secret(parsed->secret) == a.secret_hash);
  CHECK(a.secret_hash.find(parsed->secret) == std::string::npos);
}

TEST_CASE("api keys: anything not shaped like a key is refused before any lookup", "[auth]") {
  auto key = generate_api_key().plaintext;
  CHECK_FALSE(parse_api_key(""));
  CHECK_FALSE(parse_api_key(key.substr(1)));
  CHECK_FALSE(parse_api_key(key + "0"));
  CHECK_FALSE(parse_api_key("lbx_" + key.substr(4)));
  std::string upper = key;
  upper[10] = 'G';
  CHECK_FALSE(parse_api_key(upper));
  std::string no_separator = key;
  no_separator[16] = '-';
  CHECK_FALSE(parse_api_key(no_separator));
}

TEST_CASE("roles: viewer < submitter < admin", "[auth]") {
  CHECK(role_allows(Role::admin, Role::viewer));
  CHECK(role_allows(Role::submitter, Role::submitter));
  CHECK_FALSE(role_allows(Role::viewer, Role::submitter));
  CHECK_FALSE(role_allows(Role::submitter, Role::admin));
  CHECK(parse_role("submitter") == Role::submitter);
  CHECK_FALSE(parse_role("root"));
}
