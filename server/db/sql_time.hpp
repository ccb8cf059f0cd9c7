#pragma once
// Timestamps as the API shows them, formatted by PostgreSQL in the query (one pass, no parsing):
// RFC 3339 in UTC with microseconds, e.g. 2026-11-28T10:51:51.384915Z. NULL stays NULL.
#include <string>

namespace labelbroker::db {

inline std::string rfc3339_sql(const std::string& column) {
  return "to_char(" + column + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
}

}  // namespace labelbroker::db
