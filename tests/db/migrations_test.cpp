// Migrations against a real PostgreSQL (a scratch database per test).
#include "db/migrations.hpp"

#include <future>
#include <vector>

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "support/scratch_db.hpp"

using namespace labelbroker;
using labelbroker::testing::ScratchDatabase;

namespace {

std::vector<db::Migration> sample_migrations() {
  return {
      {1, "widgets", "CREATE TABLE widgets (id int PRIMARY KEY);"},
      {2, "widget_names", "ALTER TABLE widgets ADD COLUMN name text;"},
  };
}

int count(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx(c);
  return tx.exec1(sql)[0].as<int>();
}

}  // namespace

TEST_CASE("migrations apply in order and a second run is a no-op", "[.db][migrations]") {
  ScratchDatabase scratch;
  pqxx::connection c(scratch.url());
  CHECK(db::applied_schema_version(c) == -1);

  auto first = db::apply_migrations(c, sample_migrations());
  CHECK(first.applied == std::vector<int>{1, 2});
  CHECK(first.schema_version == 2);
  CHECK(db::applied_schema_version(c) == 2);
  CHECK(count(c, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'widgets'") == 2);

  auto second = db::apply_migrations(c, sample_migrations());
  CHECK(second.applied.empty());
  CHECK(second.schema_version == 2);
  CHECK(count(c, "SELECT count(*) FROM schema_migrations") == 2);

  auto checksum = pqxx::nontransaction(c).exec1("SELECT checksum FROM schema_migrations WHERE version = 1")[0];
  CHECK(checksum.as<std::string>() == sample_migrations()[0].checksum());
}

TEST_CASE("an edited migration stops start-up with the file named", "[.db][migrations]") {
  ScratchDatabase scratch;
  pqxx::connection c(scratch.url());
  db::apply_migrations(c, sample_migrations());

  auto edited = sample_migrations();
  edited[0].sql = "CREATE TABLE widgets (id bigint PRIMARY KEY);";
  edited.push_back({3, "more", "CREATE TABLE more_widgets (id int);"});
  try {
    db::apply_migrations(c, edited);
    FAIL("expected MigrationError");
  } catch (const db::MigrationError& e) {
    const std::string what = e.what();
    CHECK(what.find("schema/0001_widgets.sql changed after it was applied") != std::string::npos);
  }
  CHECK_THROWS_AS(db::verify_migrations(c, edited), db::MigrationError);
  // Nothing after the mismatch was applied.
  CHECK(db::applied_schema_version(c) == 2);
}

TEST_CASE("a database migrated by a newer binary is refused", "[.db][migrations]") {
  ScratchDatabase scratch;
  pqxx::connection c(scratch.url());
  db::apply_migrations(c, sample_migrations());
  auto older = sample_migrations();
  older.pop_back();
  CHECK_THROWS_WITH(db::apply_migrations(c, older), Catch::Contains("does not know"));
}

TEST_CASE("a failing migration is rolled back and reported", "[.db][migrations]") {
  ScratchDatabase scratch;
  pqxx::connection c(scratch.url());
  auto broken = sample_migrations();
  broken.push_back({3, "broken", "CREATE TABLE half (id int); SELECT no_such_function();"});
  CHECK_THROWS_WITH(db::apply_migrations(c, broken), Catch::Contains("schema/0003_broken.sql failed"));
  CHECK(db::applied_schema_version(c) == 2);
  CHECK(count(c, "SELECT count(*) FROM pg_tables WHERE tablename = 'half'") == 0);
}

TEST_CASE("processes migrating at the same time do not race", "[.db][migrations]") {
  ScratchDatabase scratch;
  std::vector<std::future<db::MigrationReport>> runs;
  for (int i = 0; i < 6; ++i) {
    runs.push_back(std::async(std::launch::async, [&] {
      pqxx::connection c(scratch.url());
      return db::apply_migrations(c, db::builtin_migrations());
    }));
  }
  std::size_t applied_total = 0;
  for (auto& r : runs) applied_total += r.get().applied.size();
  CHECK(applied_total == db::builtin_migrations().size());  // each migration applied exactly once
  pqxx::connection c(scratch.url());
  CHECK(count(c, "SELECT count(*) FROM schema_migrations") == static_cast<int>(db::builtin_migrations().size()));
}

TEST_CASE("the built-in migrations apply cleanly to an empty database", "[.db][migrations]") {
  ScratchDatabase scratch;
  pqxx::connection c(scratch.url());
  auto report = db::apply_migrations(c, db::builtin_migrations());
  REQUIRE_FALSE(db::builtin_migrations().empty());
  CHECK(report.schema_version == db::builtin_migrations().back().version);
  CHECK(count(c, "SELECT count(*) FROM pg_tables WHERE tablename IN ('teams', 'api_keys')") == 2);
}
