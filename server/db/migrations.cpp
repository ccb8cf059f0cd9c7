#include "db/migrations.hpp"

#include <map>

#include <pqxx/pqxx>

#include "common/crypto.hpp"
#include "common/log.hpp"

namespace labelbroker::db {
namespace {

// Arbitrary constant shared by every labelbroker process: "lbmigr" in ASCII.
constexpr long long kMigrationLockKey = 0x6c626d696772LL;

struct AppliedRow {
  std::string name;
  std::string checksum;
};

void ensure_table(pqxx::connection& connection) {
  pqxx::work tx(connection);
  tx.exec0(R"(CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()))");
  tx.commit();
}

std::map<int, AppliedRow> read_applied(pqxx::connection& connection) {
  pqxx::nontransaction tx(connection);
  std::map<int, AppliedRow> out;
  for (const auto& row : tx.exec("SELECT version, name, checksum FROM schema_migrations ORDER BY version")) {
    out[row[0].as<int>()] = AppliedRow{row[1].as<std::string>(), row[2].as<std::string>()};
  }
  return out;
}

std::string file_name(int version, const std::string& name) {
  char prefix[8];
  std::snprintf(prefix, sizeof prefix, "%04d", version);
  return std::string("schema/") + prefix + "_" + name + ".sql";
}

// Throws MigrationError when what the database recorded disagrees with the binary's files.
MigrationReport check(const std::map<int, AppliedRow>& applied, const std::vector<Migration>& migrations) {
  std::map<int, const Migration*> known;
  for (const auto& m : migrations) known[m.version] = &m;
  MigrationReport report;
  for (const auto& [version, row] : applied) {
    auto it = known.find(version);
    if (it == known.end()) {
      throw MigrationError("database has migration " + file_name(version, row.name) +
                           " that this binary does not know; it was applied by a newer labelbroker");
    }
    if (it->second->checksum() != row.checksum) {
      throw MigrationError(file_name(version, it->second->name) + " changed after it was applied (checksum " +
                           row.checksum.substr(0, 12) + " in database, " + it->second->checksum().substr(0, 12) +
                           " in this build); add a new migration instead of editing an applied one");
    }
    report.schema_version = std::max(report.schema_version, version);
  }
  for (const auto& m : migrations)
    if (!applied.count(m.version)) ++report.pending;
  return report;
}

class AdvisoryLock {
 public:
  explicit AdvisoryLock(pqxx::connection& connection) : connection_(connection) {
    pqxx::nontransaction tx(connection_);
    tx.exec_params("SELECT pg_advisory_lock($1)", kMigrationLockKey);
  }
  ~AdvisoryLock() {
    try {
      pqxx::nontransaction tx(connection_);
      tx.exec_params("SELECT pg_advisory_unlock($1)", kMigrationLockKey);
    } catch (const std::exception& e) {
      // The lock is session-scoped: if the connection is gone, so is the lock.
      common::log::warn("could not release migration lock", {{"error", e.what()}});
    }
  }
  AdvisoryLock(const AdvisoryLock&) = delete;
  AdvisoryLock& operator=(const AdvisoryLock&) = delete;

 private:
  pqxx::connection& connection_;
};

}  // namespace

std::string Migration::checksum() const {
  return common::sha256_hex(sql);
}

MigrationReport apply_migrations(pqxx::connection& connection, const std::vector<Migration>& migrations) {
  AdvisoryLock lock(connection);
  ensure_table(connection);
  auto applied = read_applied(connection);
  MigrationReport report = check(applied, migrations);
  report.pending = 0;
  for (const auto& m : migrations) {
    if (applied.count(m.version)) continue;
    pqxx::work tx(connection);
    try {
      tx.exec(m.sql);
    } catch (const std::exception& e) {
      throw MigrationError(file_name(m.version, m.name) + " failed: " + e.what());
    }
    tx.exec_params0("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", m.version, m.name,
                    m.checksum());
    tx.commit();
    report.applied.push_back(m.version);
    report.schema_version = std::max(report.schema_version, m.version);
    common::log::info("applied migration", {{"file", file_name(m.version, m.name)}});
  }
  return report;
}

MigrationReport verify_migrations(pqxx::connection& connection, const std::vector<Migration>& migrations) {
  if (applied_schema_version(connection) < 0) {
    MigrationReport report;
    report.pending = static_cast<int>(migrations.size());
    return report;
  }
  return check(read_applied(connection), migrations);
}

int applied_schema_version(pqxx::connection& connection) {
  pqxx::nontransaction tx(connection);
  auto exists = tx.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL");
  if (!exists[0].as<bool>()) return -1;
  return tx.exec1("SELECT coalesce(max(version), 0) FROM schema_migrations")[0].as<int>();
}

}  // namespace labelbroker::db
