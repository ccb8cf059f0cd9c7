// The connection pool against a real PostgreSQL.
#include "db/pool.hpp"

#include <future>

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "db/errors.hpp"
#include "db/probe.hpp"
#include "support/scratch_db.hpp"

using namespace labelbroker;
using labelbroker::testing::ScratchDatabase;
using std::chrono::milliseconds;

namespace {

db::PoolOptions options_for(const std::string& url, std::size_t size) {
  db::PoolOptions o;
  o.url = url;
  o.size = size;
  o.acquire_timeout = milliseconds(300);
  o.statement_timeout = milliseconds(200);
  return o;
}

int backend_pid(pqxx::connection& c) {
  return pqxx::nontransaction(c).exec1("SELECT pg_backend_pid()")[0].as<int>();
}

}  // namespace

TEST_CASE("pool: connections are reused and bounded", "[.db][pool]") {
  ScratchDatabase scratch;
  db::ConnectionPool pool(options_for(scratch.url(), 2));
  int first_pid;
  {
    auto lease = pool.acquire();
    first_pid = backend_pid(lease.connection());
  }
  {
    auto lease = pool.acquire();
    CHECK(backend_pid(lease.connection()) == first_pid);  // reused, not reopened
  }
  auto a = pool.acquire();
  auto b = pool.acquire();
  CHECK(pool.stats().in_use == 2);
  CHECK_THROWS_AS(pool.acquire(), db::PoolExhausted);

  // A waiter gets the connection as soon as one is given back.
  auto waiter =
      std::async(std::launch::async, [&] { return backend_pid(pool.acquire(milliseconds(5000)).connection()); });
  { auto released = std::move(a); }
  CHECK(waiter.get() > 0);
}

TEST_CASE("pool: prepared statements exist on every connection", "[.db][pool]") {
  ScratchDatabase scratch;
  db::ConnectionPool pool(options_for(scratch.url(), 2));
  pool.register_statement("add", "SELECT $1::int + $2::int");
  auto a = pool.acquire();
  auto b = pool.acquire();
  CHECK(pqxx::nontransaction(a.connection()).exec_prepared1("add", 2, 3)[0].as<int>() == 5);
  CHECK(pqxx::nontransaction(b.connection()).exec_prepared1("add", 4, 5)[0].as<int>() == 9);
}

TEST_CASE("pool: the statement timeout applies and maps to 503", "[.db][pool]") {
  ScratchDatabase scratch;
  db::ConnectionPool pool(options_for(scratch.url(), 1));
  try {
    pool.run([](pqxx::connection& c) { return pqxx::nontransaction(c).exec("SELECT pg_sleep(5)"); });
    FAIL("expected a statement timeout");
  } catch (const pqxx::sql_error& e) {
    CHECK(e.sqlstate() == "57014");
    CHECK(db::classify_db_error(e).http_status == 503);
  }
  // The connection is still usable afterwards.
  CHECK(pool.run([](pqxx::connection& c) { return pqxx::nontransaction(c).exec1("SELECT 1")[0].as<int>(); }) == 1);
}

TEST_CASE("pool: a killed connection is replaced on the next acquire", "[.db][pool]") {
  ScratchDatabase scratch;
  db::ConnectionPool pool(options_for(scratch.url(), 1));
  int old_pid = pool.run([](pqxx::connection& c) { return backend_pid(c); });
  {
    pqxx::connection admin(scratch.url());
    pqxx::nontransaction(admin).exec_params("SELECT pg_terminate_backend($1)", old_pid);
  }
  CHECK_THROWS_AS(pool.run([](pqxx::connection& c) { return backend_pid(c); }), pqxx::broken_connection);
  int new_pid = pool.run([](pqxx::connection& c) { return backend_pid(c); });
  CHECK(new_pid != old_pid);
  CHECK(pool.stats().open == 1);
}

TEST_CASE("probe: reports schema version and unreachable databases", "[.db][pool]") {
  ScratchDatabase scratch;
  db::ConnectionPool pool(options_for(scratch.url(), 1));
  auto empty = db::probe_schema(pool, milliseconds(1000));
  CHECK(empty.reachable);
  CHECK(empty.applied_version == -1);

  db::ConnectionPool nowhere(options_for("postgresql://x@127.0.0.1:1/none", 1));
  auto down = db::probe_schema(nowhere, milliseconds(1000));
  CHECK_FALSE(down.reachable);
  CHECK(down.error == "cannot connect to the database");
}
