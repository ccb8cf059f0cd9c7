#pragma once
// Bearer API-key authentication for /v1 routes. A handler wrapped by require_role() runs only for
// a valid, unrevoked, unexpired key within its rate limit whose role allows the route; it receives
// the caller's team. Missing, malformed, unknown, revoked or wrong keys all get the same 401, so
// nothing is learned by probing; a key over its rate limit gets 429 with Retry-After (counted
// before the role check, so refused requests count too); a valid key with too small a role 403.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "auth/api_key.hpp"
#include "auth/rate_limiter.hpp"
#include "db/admin_store.hpp"
#include "db/pool.hpp"
#include "db/team_store.hpp"
#include "http/router.hpp"

namespace labelbroker::api {

struct Caller {
  std::int64_t team_id = 0;
  std::string team;
  auth::Role role = auth::Role::viewer;
  std::int64_t key_id = 0;
  std::string key_prefix;
};

// Who to name in the audit trail for a change this caller makes with this request.
db::AuditContext audit_context(const Caller& caller, const http::Request& request);

// Verified API keys by prefix, so that a key in steady use costs no database round trip: a key
// found in the database and whose secret matched is reused for `ttl`, so revocation and role
// changes take effect within `ttl` in every process. Only verified keys are remembered (unknown
// prefixes and wrong secrets ask the database every time), so a new key works at once. A ttl of 0
// disables the cache. At most `max_entries` keys are kept.
//
// It also decides when a key's last_used_at is written: at most once per kTouchInterval per key
// per process, whether or not the cache is enabled.
//
// Thread safety: every member may be called concurrently. A hit takes a shared lock only.
class KeyCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Loader = std::function<std::optional<db::KeyRecord>(const std::string& prefix)>;
  static constexpr std::size_t kDefaultMaxEntries = 10000;
  static constexpr std::chrono::seconds kTouchInterval{60};

  explicit KeyCache(std::chrono::milliseconds ttl, std::size_t max_entries = kDefaultMaxEntries,
                    std::function<Clock::time_point()> now = Clock::now);

  // Forgets every cached key (touch times are kept).
  void set_ttl(std::chrono::milliseconds ttl);
  std::chrono::milliseconds ttl() const;

  // The active key with this prefix whose stored hash equals secret_hash (compared in constant
  // time), or null: unknown, revoked (as of at most ttl ago) or wrong secret. load() is called on
  // a miss; its exceptions propagate and nothing is cached then.
  std::shared_ptr<const db::KeyRecord> authenticate(const std::string& prefix, const std::string& secret_hash,
                                                    const Loader& load);

  // The cached, fresh key with this prefix and secret hash, without asking the database; null on
  // a miss (the caller then goes the way of authenticate()).
  std::shared_ptr<const db::KeyRecord> cached(const std::string& prefix, const std::string& secret_hash) const;
  // True when the caller should record a use of this key now; then false for kTouchInterval.
  bool claim_touch(const std::string& prefix);
  // Whether claim_touch() would say true now (it does not claim).
  bool touch_due(const std::string& prefix) const;

  void clear();
  std::size_t size() const;

 private:
  struct Cached {
    std::shared_ptr<const db::KeyRecord> record;
    Clock::time_point loaded_at;
  };

  std::function<Clock::time_point()> now_;
  std::size_t max_entries_;
  mutable std::shared_mutex mutex_;
  std::chrono::milliseconds ttl_;
  std::unordered_map<std::string, Cached> keys_;
  std::unordered_map<std::string, Clock::time_point> touched_;
};

// The cache require_role(pool, need, handler) uses. Its ttl is 0 until the service sets it from
// auth.key_cache_ms, so tests that build routes themselves see revocations at once.
KeyCache& shared_key_cache();

using AuthedHandler = std::function<http::Response(http::Request&, const Caller&)>;

// The caller of `request` if its key is in the shared cache, fresh, allows `need` and needs no
// last_used_at write now; nullopt in every other case (the worker path decides those). Never
// blocks: for fast paths on the I/O thread.
std::optional<Caller> cached_caller(const http::Request& request, auth::Role need);

http::Handler require_role(db::ConnectionPool& pool, auth::Role need, AuthedHandler handler);
// The same with a cache of the caller's own (tests; keys must outlive the handler).
http::Handler require_role(db::ConnectionPool& pool, KeyCache& keys, auth::Role need, AuthedHandler handler);

}  // namespace labelbroker::api
