#include "api/auth.hpp"

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "db/team_store.hpp"
#include "http/problem.hpp"

namespace labelbroker::api {
namespace {

http::Response unauthorized() {
  http::Response r =
      http::problem(401, "unauthorized", "Unauthorized", "send a valid API key as \"Authorization: Bearer <key>\"");
  r.headers.set("WWW-Authenticate", "Bearer realm=\"labelbroker\"");
  return r;
}

}  // namespace

http::Handler require_role(db::ConnectionPool& pool, auth::Role need, AuthedHandler handler) {
  return [&pool, need, handler = std::move(handler)](http::Request& request) -> http::Response {
    auto header = request.header("Authorization");
    if (!header || header->size() < 7 || !http::iequals(header->substr(0, 7), "Bearer ")) return unauthorized();
    auto key = auth::parse_api_key(header->substr(7));
    if (!key) return unauthorized();
    auto record = pool.run([&](pqxx::connection& c) { return db::find_active_key(c, key->prefix); });
    if (!record || !common::constant_time_equal(auth::hash_secret(key->secret), record->secret_hash))
      return unauthorized();
    auto role = auth::parse_role(record->role);
    if (!role) return unauthorized();  // a role this build does not know grants nothing
    if (!auth::role_allows(*role, need)) {
      return http::problem(403, "forbidden", "Forbidden",
                           "this API key has the " + std::string(auth::to_string(*role)) + " role; " +
                               std::string(auth::to_string(need)) + " is needed");
    }
    try {
      pool.run([&](pqxx::connection& c) {
        db::touch_key(c, record->key_id);
        return 0;
      });
    } catch (const std::exception& e) {
      // Bookkeeping only: never fail the request for it.
      common::log::warn("could not record API key use", {{"key_prefix", key->prefix}, {"error", e.what()}});
    }
    return handler(request, Caller{record->team_id, record->team_name, *role, record->key_id});
  };
}

}  // namespace labelbroker::api
