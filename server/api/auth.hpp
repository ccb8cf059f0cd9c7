#pragma once
// Bearer API-key authentication for /v1 routes. A handler wrapped by require_role() runs only for
// a valid, unrevoked key whose role allows the route; it receives the caller's team.
// Missing, malformed, unknown, revoked or wrong keys all get the same 401, so nothing is learned
// by probing; a valid key with too small a role gets 403.
#include <cstdint>
#include <functional>
#include <string>

#include "auth/api_key.hpp"
#include "db/pool.hpp"
#include "http/router.hpp"

namespace labelbroker::api {

struct Caller {
  std::int64_t team_id = 0;
  std::string team;
  auth::Role role = auth::Role::viewer;
  std::int64_t key_id = 0;
};

using AuthedHandler = std::function<http::Response(http::Request&, const Caller&)>;

http::Handler require_role(db::ConnectionPool& pool, auth::Role need, AuthedHandler handler);

}  // namespace labelbroker::api
