#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/except>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/money.hpp"
#include "common/time.hpp"
#include "db/errors.hpp"
#include "db/pool.hpp"

using namespace labelbroker;

TEST_CASE("sha256 matches the published test vectors", "[crypto]") {
  CHECK(common::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(common::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("HMAC-SHA256 and base64 match RFC 4231 and RFC 4648 vectors", "[crypto]") {
  // RFC 4231 test case 2.
  CHECK(common::hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(common::base64_encode("") == "");
  CHECK(common::base64_encode("f") == "Zg==");
  CHECK(common::base64_encode("fo") == "Zm8=");
  CHECK(common::base64_encode("foo") == "Zm9v");
  CHECK(common::base64_encode("foobar") == "Zm9vYmFy");
  CHECK(common::base64_encode("live_key:") == "bGl2ZV9rZXk6");
}

TEST_CASE("random_hex gives distinct values of the asked length", "[crypto]") {
  auto a = common::random_hex(16);
  auto b = common::random_hex(16);
  CHECK(a.size() == 32);
  CHECK(a != b);
  CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
}

TEST_CASE("constant_time_equal compares whole strings", "[crypto]") {
  CHECK(common::constant_time_equal("secret", "secret"));
  CHECK_FALSE(common::constant_time_equal("secret", "secreT"));
  CHECK_FALSE(common::constant_time_equal("secret", "secret2"));
  CHECK(common::constant_time_equal("", ""));
}

TEST_CASE("RFC 3339 formatting and parsing round-trip in UTC", "[time]") {
  using namespace std::chrono;
  auto t = sys_days{year{2026} / 12 / 1} + hours{13} + minutes{4} + seconds{5} + milliseconds{67};
  CHECK(common::format_rfc3339(t) == "2026-12-01T13:04:05Z");
  CHECK(common::format_rfc3339(t, true) == "2026-12-01T13:04:05.067Z");
  auto parsed = common::parse_rfc3339("2026-12-01T13:04:05.067Z");
  REQUIRE(parsed);
  CHECK(duration_cast<milliseconds>(*parsed - t).count() == 0);
  auto offset = common::parse_rfc3339("2026-12-01T15:04:05+02:00");
  REQUIRE(offset);
  CHECK(common::format_rfc3339(*offset) == "2026-12-01T13:04:05Z");
  CHECK_FALSE(common::parse_rfc3339("2026-02-30T00:00:00Z"));
  CHECK_FALSE(common::parse_rfc3339("2026-12-01 13:04"));
  CHECK_FALSE(common::parse_rfc3339("2026-12-01T13:04:05"));
  // Outside what system_clock holds: refused, never overflowed.
  CHECK_FALSE(common::parse_rfc3339("2999-01-01T00:00:00Z"));
  CHECK_FALSE(common::parse_rfc3339("9999-12-31T23:59:59Z"));
  CHECK_FALSE(common::parse_rfc3339("1600-01-01T00:00:00Z"));
  REQUIRE(common::parse_rfc3339("2261-12-31T23:59:59Z"));
  CHECK(common::format_rfc3339(*common::parse_rfc3339("2261-12-31T23:59:59Z")) == "2261-12-31T23:59:59Z");
  CHECK_FALSE(common::parse_rfc3339("2026-12-01T13:04:05Zjunk"));
}

TEST_CASE("connection strings are redacted before logging", "[log]") {
  CHECK(common::log::redact_url("postgresql://app:s3cret@db:5432/lb") == "postgresql://app:***@db:5432/lb");
  CHECK(common::log::redact_url("postgresql://app@db/lb") == "postgresql://app@db/lb");
  CHECK(common::log::redact_url("host=db password=s3cret dbname=lb") == "host=db password=*** dbname=lb");
  CHECK(common::log::redact_url("host=db password = 'a b' dbname=lb") == "host=db password = *** dbname=lb");
  CHECK(common::log::redact_url("postgresql://db/lb?user=app&password=s3cret&sslmode=require") ==
        "postgresql://db/lb?user=app&password=***&sslmode=require");
  CHECK(common::log::redact_url("postgresql://a:b@c@db/lb") == "postgresql://a:***@db/lb");

  std::string line;
  common::log::append_json_string(line, "a\"b\\c\n\x01\xff\xc3\xa9");
  CHECK(line == "\"a\\\"b\\\\c\\n\\u0001\\ufffd\xc3\xa9\"");
  CHECK_NOTHROW(nlohmann::json::parse(line));
}

TEST_CASE("database errors map to HTTP statuses in one place", "[db-errors]") {
  CHECK(db::classify_db_error(pqxx::unique_violation("dup", "INSERT", "23505")).http_status == 409);
  CHECK(db::classify_db_error(pqxx::foreign_key_violation("fk", "INSERT", "23503")).http_status == 422);
  CHECK(db::classify_db_error(pqxx::check_violation("chk", "INSERT", "23514")).http_status == 422);
  CHECK(db::classify_db_error(pqxx::not_null_violation("nn", "INSERT", "23502")).http_status == 422);
  auto serial = db::classify_db_error(pqxx::serialization_failure("serialization"));
  CHECK(serial.http_status == 503);
  CHECK(serial.retry_after_seconds > 0);
  CHECK(serial.transient);
  CHECK(db::classify_db_error(pqxx::broken_connection("gone")).http_status == 503);
  CHECK(db::classify_db_error(db::PoolExhausted("busy")).http_status == 503);
  CHECK(db::classify_db_error(pqxx::sql_error("canceling statement due to statement timeout", "SELECT", "57014"))
            .http_status == 503);
  auto other = db::classify_db_error(std::runtime_error("bug"));
  CHECK(other.http_status == 500);
  CHECK_FALSE(other.transient);
}

TEST_CASE("money: decimal strings to micro-dollars and back, without floating point", "[money]") {
  CHECK(common::parse_usd_micros("0.08") == 80000);
  CHECK(common::parse_usd_micros("250.00") == 250000000);
  CHECK(common::parse_usd_micros("12") == 12000000);
  CHECK(common::parse_usd_micros("0.000001") == 1);
  CHECK_FALSE(common::parse_usd_micros("0.0000001"));
  CHECK_FALSE(common::parse_usd_micros("-1"));
  CHECK_FALSE(common::parse_usd_micros("1e3"));
  CHECK_FALSE(common::parse_usd_micros("1."));
  CHECK_FALSE(common::parse_usd_micros(".5"));
  CHECK_FALSE(common::parse_usd_micros(""));
  CHECK(common::format_usd(80000) == "0.08");
  CHECK(common::format_usd(250000000) == "250.00");
  CHECK(common::format_usd(1) == "0.000001");
  CHECK(common::format_usd(-1500000) == "-1.50");
}
