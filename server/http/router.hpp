#pragma once
// Maps (method, path) to a handler. Patterns are literal segments and {name} parameters:
// "/v1/jobs/{id}/results". Matching is exact per segment; literal routes win over parameters.
//
// The router is built at start-up and then only read, so concurrent match() calls are safe.
// Handlers run either on an I/O thread (only for work that never blocks: no database, no disk,
// no network) or on the worker pool (the default).
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/request.hpp"

namespace labelbroker::http {

using Handler = std::function<Response(Request&)>;
// Turns an exception escaping a handler into a response; returns nothing to fall back to a 500.
using ExceptionMapper = std::function<std::optional<Response>(const std::exception&, const Request&)>;

enum class Execution { io_thread, worker };

// Per-route settings beyond the handler.
// An answer a worker route can give on the I/O thread without blocking (from memory), or nullopt
// to have the request go to the worker pool as usual. Must never block or do I/O.
using FastHandler = std::function<std::optional<Response>(Request&)>;

struct RouteOptions {
  Execution execution = Execution::worker;
  // The largest request body this route accepts; nullopt: the server's body_limit_bytes. Upload
  // routes (job items) need far more than the rest of the API, which keeps the small global limit.
  std::optional<std::size_t> body_limit_bytes;
  // Tried first on the I/O thread: saves the hand-off to a worker for answers already in memory
  // (cached views a dashboard polls). Worker routes only.
  FastHandler fast;
};

struct Route {
  std::string method;
  std::string pattern;
  Handler handler;
  Execution execution = Execution::worker;
  FastHandler fast;  // see RouteOptions
  std::vector<std::string> segments;  // pattern split on '/'; "{x}" marks a parameter
  std::optional<std::size_t> body_limit_bytes;  // see RouteOptions
};

struct RouteMatch {
  enum class Outcome { found, not_found, method_not_allowed, bad_path };
  Outcome outcome = Outcome::not_found;
  const Route* route = nullptr;
  std::vector<std::pair<std::string, std::string>> params;
  std::string allow;  // for method_not_allowed: "GET, POST"
};

class Router {
 public:
  // Throws std::invalid_argument for a malformed pattern or a duplicate (method, pattern).
  void add(std::string method, std::string pattern, Handler handler, Execution execution = Execution::worker);
  void add(std::string method, std::string pattern, Handler handler, RouteOptions options);

  // The body limit for a request: the matched route's own limit, else `fallback` (the server's).
  static std::size_t body_limit(const Route* route, std::size_t fallback) {
    return route && route->body_limit_bytes ? *route->body_limit_bytes : fallback;
  }

  // HEAD matches GET routes. raw_path is still percent-encoded; parameters come back decoded.
  RouteMatch match(std::string_view method, std::string_view raw_path) const;

  const std::vector<Route>& routes() const { return routes_; }

  // Consulted by the server when a handler throws (set once, at start-up).
  void set_exception_mapper(ExceptionMapper mapper) { exception_mapper_ = std::move(mapper); }
  const ExceptionMapper& exception_mapper() const { return exception_mapper_; }

 private:
  std::vector<Route> routes_;
  ExceptionMapper exception_mapper_;
};

}  // namespace labelbroker::http
