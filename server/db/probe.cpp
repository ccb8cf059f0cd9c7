#include "db/probe.hpp"

#include <algorithm>

#include "db/migrations.hpp"

namespace labelbroker::db {

SchemaStatus probe_schema(ConnectionPool& pool, std::chrono::milliseconds timeout) {
  SchemaStatus status;
  try {
    Lease lease = pool.acquire(timeout);
    try {
      status.applied_version = applied_schema_version(lease.connection());
      status.reachable = true;
    } catch (...) {
      lease.mark_broken();
      throw;
    }
  } catch (const PoolExhausted& e) {
    status.error = e.what();
  } catch (const pqxx::broken_connection&) {
    // libpq's message can name the host; it never carries the password, but keep it short.
    status.error = "cannot connect to the database";
  } catch (const std::exception& e) {
    status.error = std::string("database check failed: ") + e.what();
  }
  return status;
}

int expected_schema_version() {
  int version = 0;
  for (const auto& m : builtin_migrations()) version = std::max(version, m.version);
  return version;
}

}  // namespace labelbroker::db
