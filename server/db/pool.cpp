#include "db/pool.hpp"

#include <pqxx/except>

namespace labelbroker::db {

Lease::Lease(Lease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)), connection_(std::move(other.connection_)), broken_(other.broken_) {}

Lease::~Lease() {
  if (pool_) pool_->give_back(std::move(connection_), broken_);
}

std::string with_connection_options(const std::string& url, const PoolOptions& options) {
  const long connect_seconds = std::max<long>(1, (options.connect_timeout.count() + 999) / 1000);
  // libpq accepts both URI and key/value forms; options are appended in the matching syntax.
  const bool is_uri = url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
  std::string out = url;
  if (is_uri) {
    out += url.find('?') == std::string::npos ? "?" : "&";
    out += "connect_timeout=" + std::to_string(connect_seconds) + "&application_name=" + options.application_name +
           "&options=-c%20statement_timeout%3D" + std::to_string(options.statement_timeout.count());
  } else {
    out += " connect_timeout=" + std::to_string(connect_seconds) + " application_name=" + options.application_name +
           " options='-c statement_timeout=" + std::to_string(options.statement_timeout.count()) + "'";
  }
  return out;
}

ConnectionPool::ConnectionPool(PoolOptions options) : options_(std::move(options)) {
  if (options_.size == 0) options_.size = 1;
}

ConnectionPool::~ConnectionPool() = default;

void ConnectionPool::register_statement(std::string name, std::string sql) {
  std::lock_guard lock(mutex_);
  statements_.emplace_back(std::move(name), std::move(sql));
  for (auto& c : idle_) c->prepare(statements_.back().first, statements_.back().second);
}

std::unique_ptr<pqxx::connection> ConnectionPool::open_connection() {
  auto connection = std::make_unique<pqxx::connection>(with_connection_options(options_.url, options_));
  // A broken connection must surface as an error and be replaced by the pool, not be silently
  // reopened by libpqxx halfway through a unit of work. The setter is deprecated in 6.4 but is the
  // only switch for this behaviour.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  connection->inhibit_reactivation(true);
#pragma GCC diagnostic pop
  std::lock_guard lock(mutex_);
  for (const auto& [name, sql] : statements_) connection->prepare(name, sql);
  return connection;
}

Lease ConnectionPool::acquire(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  ++waiting_;
  const bool got = available_.wait_until(lock, deadline, [&] { return !idle_.empty() || open_ < options_.size; });
  --waiting_;
  if (!got) {
    throw PoolExhausted("no database connection free within " + std::to_string(timeout.count()) + " ms (pool size " +
                        std::to_string(options_.size) + ")");
  }
  if (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    ++in_use_;
    return Lease(this, std::move(connection));
  }
  // Reserve the slot, then connect without holding the lock: connecting can take seconds.
  ++open_;
  ++in_use_;
  lock.unlock();
  try {
    return Lease(this, open_connection());
  } catch (...) {
    lock.lock();
    --open_;
    --in_use_;
    available_.notify_one();
    throw;
  }
}

void ConnectionPool::give_back(std::unique_ptr<pqxx::connection> connection, bool broken) {
  // Dropping a connection closes its socket; do that outside the lock.
  std::unique_ptr<pqxx::connection> discard;
  {
    std::lock_guard lock(mutex_);
    --in_use_;
    if (broken || !connection || !connection->is_open()) {
      --open_;
      discard = std::move(connection);
    } else {
      idle_.push_back(std::move(connection));
    }
  }
  available_.notify_one();
}

PoolStats ConnectionPool::stats() const {
  std::lock_guard lock(mutex_);
  return PoolStats{options_.size, open_, in_use_, waiting_};
}

}  // namespace labelbroker::db
