#pragma once
// Schema migrations: schema/NNNN_name.sql files compiled into the binary, applied in order and
// recorded in schema_migrations with a SHA-256 of their text.
//
// Guarantees: applying twice is a no-op; each migration runs in its own transaction together with
// its bookkeeping row; concurrent processes serialise on a PostgreSQL advisory lock; an applied
// migration whose text has changed, or one this binary does not know, stops start-up.
#include <stdexcept>
#include <string>
#include <vector>

#include <pqxx/connection>

namespace labelbroker::db {

struct Migration {
  int version = 0;
  std::string name;
  std::string sql;
  std::string checksum() const;  // sha256 hex of sql
};

// The migrations in schema/, sorted by version.
const std::vector<Migration>& builtin_migrations();

class MigrationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MigrationReport {
  std::vector<int> applied;  // versions applied by this call
  int schema_version = 0;    // highest applied version afterwards
  int pending = 0;           // versions known to the binary but not applied (verify only)
};

// Applies pending migrations. Throws MigrationError on checksum mismatch or unknown applied
// versions (nothing is applied then), pqxx exceptions on database failure.
MigrationReport apply_migrations(pqxx::connection& connection, const std::vector<Migration>& migrations);

// Checks applied migrations against `migrations` without changing anything.
MigrationReport verify_migrations(pqxx::connection& connection, const std::vector<Migration>& migrations);

// Highest applied version, or -1 when schema_migrations does not exist yet.
int applied_schema_version(pqxx::connection& connection);

}  // namespace labelbroker::db
