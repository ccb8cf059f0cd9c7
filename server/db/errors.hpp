#pragma once
// The one place where database exceptions are turned into something an HTTP caller can act on.
// Kept free of HTTP types: the api layer turns a DbFailure into a problem+json response.
#include <exception>
#include <string>

namespace labelbroker::db {

struct DbFailure {
  int http_status = 500;
  std::string title;
  std::string detail;
  int retry_after_seconds = 0;  // 0: no Retry-After
  bool transient = false;       // worth retrying (serialization failure, lost connection, ...)
};

// Classifies pqxx exceptions, PoolExhausted and anything else (500).
DbFailure classify_db_error(const std::exception& error);

}  // namespace labelbroker::db
