#pragma once
// Readiness probe: is the database reachable, and is its schema the one this binary expects?
#include <chrono>
#include <string>

#include "db/pool.hpp"

namespace labelbroker::db {

struct SchemaStatus {
  bool reachable = false;
  int applied_version = -1;  // -1: unknown or no schema_migrations table
  std::string error;         // why it is not reachable; safe to show (no credentials)
};

// Never throws. Uses at most `timeout` to get a connection from the pool.
SchemaStatus probe_schema(ConnectionPool& pool, std::chrono::milliseconds timeout);

// The highest version among the migrations compiled into this binary.
int expected_schema_version();

}  // namespace labelbroker::db
