#include "db/errors.hpp"

#include <pqxx/except>

#include "db/pool.hpp"

namespace labelbroker::db {

DbFailure classify_db_error(const std::exception& error) {
  // Order matters: more specific pqxx types derive from the general ones.
  if (dynamic_cast<const PoolExhausted*>(&error))
    return {503, "Database busy", "all database connections are in use; retry shortly", 1, true};
  if (dynamic_cast<const pqxx::broken_connection*>(&error))
    return {503, "Database unavailable", "the database connection failed; retry shortly", 2, true};
  if (dynamic_cast<const pqxx::serialization_failure*>(&error) || dynamic_cast<const pqxx::deadlock_detected*>(&error))
    return {503, "Database contention", "the request conflicted with concurrent work; retry it", 1, true};
  if (dynamic_cast<const pqxx::unique_violation*>(&error))
    return {409, "Conflict", "a resource with the same identity already exists", 0, false};
  if (dynamic_cast<const pqxx::foreign_key_violation*>(&error))
    return {422, "Unprocessable entity", "the request refers to a resource that does not exist", 0, false};
  if (dynamic_cast<const pqxx::check_violation*>(&error) || dynamic_cast<const pqxx::not_null_violation*>(&error))
    return {422, "Unprocessable entity", "the request violates a data constraint", 0, false};
  if (auto* sql = dynamic_cast<const pqxx::sql_error*>(&error)) {
    const std::string& state = sql->sqlstate();
    if (state == "57014")  // query_canceled: statement timeout
      return {503, "Database timeout", "the database did not answer in time; retry shortly", 2, true};
    if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03")
      return {503, "Database unavailable", "the database is restarting or unreachable; retry shortly", 2, true};
    if (state.rfind("53", 0) == 0)  // insufficient resources
      return {503, "Database overloaded", "the database is out of resources; retry later", 5, true};
  }
  return {500, "Internal server error", "an unexpected database error occurred", 0, false};
}

}  // namespace labelbroker::db
