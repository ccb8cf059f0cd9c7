#include "support/scratch_db.hpp"

#include <cstdlib>

#include <catch2/catch.hpp>
#include <pqxx/connection>
#include <pqxx/nontransaction>

#include "common/crypto.hpp"

namespace labelbroker::testing {

std::string test_database_url() {
  const char* url = std::getenv("LABELBROKER_TEST_DATABASE_URL");
  if (!url || !*url) {
    FAIL(
        "LABELBROKER_TEST_DATABASE_URL is not set: run database tests through scripts/test, "
        "which starts a throwaway PostgreSQL cluster");
  }
  return url;
}

std::string with_database_name(const std::string& url, const std::string& name) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos) throw std::invalid_argument("expected a postgresql:// URL: " + url);
  auto slash = url.find('/', scheme + 3);
  auto query = url.find('?', scheme + 3);
  std::string base = url.substr(0, slash == std::string::npos ? query : slash);
  std::string rest = query == std::string::npos ? "" : url.substr(query);
  return base + "/" + name + rest;
}

ScratchDatabase::ScratchDatabase()
    : admin_url_(test_database_url()),
      name_("lbtest_" + common::random_hex(6)),
      url_(with_database_name(admin_url_, name_)) {
  pqxx::connection admin(admin_url_);
  pqxx::nontransaction tx(admin);
  tx.exec0("CREATE DATABASE " + tx.quote_name(name_));
}

ScratchDatabase::~ScratchDatabase() {
  try {
    pqxx::connection admin(admin_url_);
    pqxx::nontransaction tx(admin);
    tx.exec0("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (const std::exception& e) {
    WARN("could not drop scratch database " << name_ << ": " << e.what());
  }
}

}  // namespace labelbroker::testing
