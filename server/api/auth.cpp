#include "api/auth.hpp"

#include <iterator>
#include <mutex>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "http/problem.hpp"

namespace labelbroker::api {
namespace {

http::Response unauthorized() {
  http::Response r =
      http::problem(401, "unauthorized", "Unauthorized", "send a valid API key as \"Authorization: Bearer <key>\"");
  r.headers.set("WWW-Authenticate", "Bearer realm=\"labelbroker\"");
  return r;
}

std::optional<auth::RateLimitPolicy> own_policy(const db::KeyRecord& record) {
  if (!record.rate_per_second || !record.rate_burst) return std::nullopt;
  return auth::RateLimitPolicy{*record.rate_per_second, *record.rate_burst};
}

http::Response rate_limited(std::chrono::seconds retry_after) {
  http::Response r = http::problem(429, "rate-limited", "Too many requests",
                                   "this API key is over its rate limit; retry after " +
                                       std::to_string(retry_after.count()) + " s");
  r.headers.set("Retry-After", std::to_string(retry_after.count()));
  return r;
}

Caller caller_of(const db::KeyRecord& record, auth::Role role) {
  return Caller{record.team_id, record.team_name, role, record.key_id, record.prefix};
}

}  // namespace

db::AuditContext audit_context(const Caller& caller, const http::Request& request) {
  db::AuditContext context;
  context.actor.type = "api_key";
  context.actor.key_id = caller.key_id;
  context.actor.key_prefix = caller.key_prefix;
  context.actor.team = caller.team;
  if (!request.request_id.empty()) context.request_id = request.request_id;
  return context;
}

KeyCache::KeyCache(std::chrono::milliseconds ttl, std::size_t max_entries, std::function<Clock::time_point()> now)
    : now_(std::move(now)), max_entries_(max_entries), ttl_(ttl) {}

void KeyCache::set_ttl(std::chrono::milliseconds ttl) {
  std::unique_lock lock(mutex_);
  ttl_ = ttl;
  keys_.clear();
}

std::chrono::milliseconds KeyCache::ttl() const {
  std::shared_lock lock(mutex_);
  return ttl_;
}

std::shared_ptr<const db::KeyRecord> KeyCache::authenticate(const std::string& prefix, const std::string& secret_hash,
                                                            const Loader& load) {
  // Stamped before the lookup: the row read is at least this recent, so a revocation is never
  // served longer than ttl after it committed.
  const auto started = now_();
  std::shared_ptr<const db::KeyRecord> record;
  bool enabled = false;
  {
    std::shared_lock lock(mutex_);
    enabled = ttl_.count() > 0;
    if (enabled) {
      if (auto it = keys_.find(prefix); it != keys_.end() && started - it->second.loaded_at < ttl_)
        record = it->second.record;
    }
  }
  if (record) return common::constant_time_equal(secret_hash, record->secret_hash) ? record : nullptr;

  auto loaded = load(prefix);
  if (!loaded) {
    if (enabled) {
      std::unique_lock lock(mutex_);
      keys_.erase(prefix);  // revoked or deleted
    }
    return nullptr;
  }
  if (!common::constant_time_equal(secret_hash, loaded->secret_hash)) return nullptr;
  record = std::make_shared<const db::KeyRecord>(std::move(*loaded));
  if (enabled) {
    std::unique_lock lock(mutex_);
    if (ttl_.count() > 0) {
      if (keys_.size() >= max_entries_ && !keys_.count(prefix)) {
        for (auto it = keys_.begin(); it != keys_.end();)
          it = started - it->second.loaded_at >= ttl_ ? keys_.erase(it) : std::next(it);
        // More live keys than the bound: start over rather than track ages; each costs one lookup.
        if (keys_.size() >= max_entries_) keys_.clear();
      }
      keys_[prefix] = Cached{record, started};
    }
  }
  return record;
}

std::shared_ptr<const db::KeyRecord> KeyCache::cached(const std::string& prefix, const std::string& secret_hash) const {
  const auto now = now_();
  std::shared_lock lock(mutex_);
  if (ttl_.count() <= 0) return nullptr;
  auto it = keys_.find(prefix);
  if (it == keys_.end() || now - it->second.loaded_at >= ttl_) return nullptr;
  return common::constant_time_equal(secret_hash, it->second.record->secret_hash) ? it->second.record : nullptr;
}

bool KeyCache::touch_due(const std::string& prefix) const {
  const auto now = now_();
  std::shared_lock lock(mutex_);
  auto it = touched_.find(prefix);
  return it == touched_.end() || now - it->second >= kTouchInterval;
}

bool KeyCache::claim_touch(const std::string& prefix) {
  const auto now = now_();
  {
    std::shared_lock lock(mutex_);
    if (auto it = touched_.find(prefix); it != touched_.end() && now - it->second < kTouchInterval) return false;
  }
  std::unique_lock lock(mutex_);
  // Re-checked under the exclusive lock so that concurrent requests claim it once.
  if (auto it = touched_.find(prefix); it != touched_.end() && now - it->second < kTouchInterval) return false;
  if (touched_.size() >= max_entries_ && !touched_.count(prefix)) {
    for (auto it = touched_.begin(); it != touched_.end();)
      it = now - it->second >= kTouchInterval ? touched_.erase(it) : std::next(it);
    // Forgetting a touch time only costs an extra UPDATE, which the SQL skips within a minute anyway.
    if (touched_.size() >= max_entries_) touched_.clear();
  }
  touched_[prefix] = now;
  return true;
}

void KeyCache::clear() {
  std::unique_lock lock(mutex_);
  keys_.clear();
}

std::size_t KeyCache::size() const {
  std::shared_lock lock(mutex_);
  return keys_.size();
}

KeyCache& shared_key_cache() {
  static KeyCache cache{std::chrono::milliseconds(0)};
  return cache;
}

http::Handler require_role(db::ConnectionPool& pool, auth::Role need, AuthedHandler handler) {
  return require_role(pool, shared_key_cache(), need, std::move(handler));
}

http::Handler require_role(db::ConnectionPool& pool, KeyCache& keys, auth::Role need, AuthedHandler handler) {
  return [&pool, &keys, need, handler = std::move(handler)](http::Request& request) -> http::Response {
    auto header = request.header("Authorization");
    if (!header || header->size() < 7 || !http::iequals(header->substr(0, 7), "Bearer ")) return unauthorized();
    auto key = auth::parse_api_key(header->substr(7));
    if (!key) return unauthorized();
    auto record = keys.authenticate(key->prefix, auth::hash_secret(key->secret), [&pool](const std::string& prefix) {
      return pool.run([&](pqxx::connection& c) { return db::find_active_key(c, prefix); });
    });
    if (!record) return unauthorized();
    auto role = auth::parse_role(record->role);
    if (!role) return unauthorized();  // a role this build does not know grants nothing
    auth::RateLimiter::Decision admitted;
    try {
      admitted = auth::shared_rate_limiter().admit(
          record->key_id, own_policy(*record), [&pool](std::int64_t key_id, const auth::RateLimitPolicy& p, int wanted) {
            const auto t = pool.run([&](pqxx::connection& c) {
              return db::take_rate_tokens(c, key_id, p.per_second, p.burst, wanted);
            });
            return auth::TokenGrant{t.granted, t.tokens_left};
          });
    } catch (const std::exception& e) {
      // The limit protects the service, it is not a gate to it: when the bucket cannot be read
      // the request goes on (and meets the database's own failure if it needs the database).
      common::log::warn("could not check the rate limit; request admitted",
                        {{"key_prefix", key->prefix}, {"error", e.what()}});
    }
    if (!admitted.allowed) return rate_limited(admitted.retry_after);
    if (!auth::role_allows(*role, need)) {
      return http::problem(403, "forbidden", "Forbidden",
                           "this API key has the " + std::string(auth::to_string(*role)) + " role; " +
                               std::string(auth::to_string(need)) + " is needed");
    }
    // A round trip once a minute per key, not per request; claimed before the write so a failing
    // database is not asked again by every request in the meantime.
    if (keys.claim_touch(key->prefix)) {
      try {
        pool.run([&](pqxx::connection& c) {
          db::touch_key(c, record->key_id);
          return 0;
        });
      } catch (const std::exception& e) {
        // Bookkeeping only: never fail the request for it.
        common::log::warn("could not record API key use", {{"key_prefix", key->prefix}, {"error", e.what()}});
      }
    }
    return handler(request, caller_of(*record, *role));
  };
}

std::optional<Caller> cached_caller(const http::Request& request, auth::Role need) {
  auto header = request.header("Authorization");
  if (!header || header->size() < 7 || !http::iequals(header->substr(0, 7), "Bearer ")) return std::nullopt;
  auto key = auth::parse_api_key(header->substr(7));
  if (!key) return std::nullopt;
  auto& keys = shared_key_cache();
  auto record = keys.cached(key->prefix, auth::hash_secret(key->secret));
  if (!record || keys.touch_due(key->prefix)) return std::nullopt;
  auto role = auth::parse_role(record->role);
  if (!role || !auth::role_allows(*role, need)) return std::nullopt;
  // Only a token already leased to this process; asking the shared bucket is the worker's job.
  auto admitted = auth::shared_rate_limiter().try_local(record->key_id, own_policy(*record));
  if (!admitted || !admitted->allowed) return std::nullopt;
  return caller_of(*record, *role);
}

}  // namespace labelbroker::api
