#pragma once
// A bounded pool of libpqxx connections.
//
// Guarantees: at most `size` connections exist; a connection is used by one thread at a time
// (whoever holds its Lease); every new connection gets the statement timeout and every registered
// prepared statement; a connection that broke is discarded when its lease ends, and the next
// acquire opens a fresh one, so the pool recovers by itself when the database comes back.
// Thread safety: all members are safe to call concurrently. Blocking: acquire() blocks (up to the
// acquire timeout) and opening a connection does network I/O, so never call it on an I/O thread.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pqxx/connection>
#include <pqxx/except>

namespace labelbroker::db {

struct PoolOptions {
  std::string url;
  std::size_t size = 8;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds statement_timeout{10000};  // 0 disables
  std::chrono::milliseconds acquire_timeout{5000};
  std::string application_name = "labelbroker";
};

// Thrown when no connection became free within the acquire timeout.
class PoolExhausted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct PoolStats {
  std::size_t size = 0;    // configured maximum
  std::size_t open = 0;    // connections that exist
  std::size_t in_use = 0;  // leased right now
  std::size_t waiting = 0;
};

class ConnectionPool;

// Exclusive use of one connection until destroyed. Call mark_broken() if the connection's state
// is unknown (e.g. after an exception mid-transaction) so it is not reused.
class Lease {
 public:
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&&) = delete;
  Lease(const Lease&) = delete;
  ~Lease();

  pqxx::connection& connection() { return *connection_; }
  pqxx::connection* operator->() { return connection_.get(); }
  void mark_broken() { broken_ = true; }

 private:
  friend class ConnectionPool;
  Lease(ConnectionPool* pool, std::unique_ptr<pqxx::connection> connection)
      : pool_(pool), connection_(std::move(connection)) {}
  ConnectionPool* pool_;
  std::unique_ptr<pqxx::connection> connection_;
  bool broken_ = false;
};

class ConnectionPool {
 public:
  explicit ConnectionPool(PoolOptions options);
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // Registers a named prepared statement on every connection, present and future.
  // Call during start-up, before the pool is shared between threads.
  void register_statement(std::string name, std::string sql);

  // Throws PoolExhausted on timeout and pqxx::broken_connection if the database is unreachable.
  Lease acquire() { return acquire(options_.acquire_timeout); }
  Lease acquire(std::chrono::milliseconds timeout);

  // Runs fn(pqxx::connection&) on a leased connection; a connection that broke on the way is
  // dropped instead of going back to the pool. Exceptions propagate.
  template <typename Fn>
  auto run(Fn&& fn) {
    Lease lease = acquire();
    try {
      return fn(lease.connection());
    } catch (const pqxx::broken_connection&) {
      lease.mark_broken();
      throw;
    } catch (const pqxx::in_doubt_error&) {
      lease.mark_broken();
      throw;
    }
  }

  PoolStats stats() const;

 private:
  friend class Lease;
  void give_back(std::unique_ptr<pqxx::connection> connection, bool broken);
  std::unique_ptr<pqxx::connection> open_connection();

  PoolOptions options_;
  std::vector<std::pair<std::string, std::string>> statements_;
  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  std::size_t open_ = 0;
  std::size_t in_use_ = 0;
  std::size_t waiting_ = 0;
};

// Adds connect_timeout, application_name and statement_timeout to a URL or key/value string.
std::string with_connection_options(const std::string& url, const PoolOptions& options);

}  // namespace labelbroker::db
