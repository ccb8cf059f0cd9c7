#include "http/router.hpp"

#include <algorithm>
#include <stdexcept>

namespace labelbroker::http {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path.front() != '/') return out;
  path.remove_prefix(1);
  while (true) {
    auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool is_param(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

// Literal segments before parameters, so "/v1/jobs/export" beats "/v1/jobs/{id}".
int specificity(const Route& r) {
  int score = 0;
  for (const auto& s : r.segments) score = score * 2 + (is_param(s) ? 0 : 1);
  return score;
}

}  // namespace

void Router::add(std::string method, std::string pattern, Handler handler, Execution execution) {
  add(std::move(method), std::move(pattern), std::move(handler), RouteOptions{execution, std::nullopt, {}});
}

void Router::add(std::string method, std::string pattern, Handler handler, RouteOptions options) {
  if (pattern.empty() || pattern.front() != '/')
    throw std::invalid_argument("route pattern must start with '/': " + pattern);
  for (const auto& r : routes_) {
    if (r.method == method && r.pattern == pattern)
      throw std::invalid_argument("duplicate route " + method + " " + pattern);
  }
  if (options.body_limit_bytes && *options.body_limit_bytes == 0)
    throw std::invalid_argument("route body limit must be positive: " + pattern);
  if (options.fast && options.execution != Execution::worker)
    throw std::invalid_argument("a fast path only makes sense on a worker route: " + pattern);
  Route route{std::move(method), std::move(pattern), std::move(handler), options.execution, options.fast, {},
              options.body_limit_bytes};
  for (auto s : split_path(route.pattern)) {
    if (s.find_first_of("{}") != std::string_view::npos && !is_param(s))
      throw std::invalid_argument("malformed parameter in route pattern " + route.pattern);
    route.segments.emplace_back(s);
  }
  routes_.push_back(std::move(route));
  std::stable_sort(routes_.begin(), routes_.end(),
                   [](const Route& a, const Route& b) { return specificity(a) > specificity(b); });
}

RouteMatch Router::match(std::string_view method, std::string_view raw_path) const {
  RouteMatch result;
  auto raw_segments = split_path(raw_path);
  std::vector<std::string> segments;
  segments.reserve(raw_segments.size());
  for (auto s : raw_segments) {
    std::string decoded;
    if (!percent_decode(s, decoded, false)) {
      result.outcome = RouteMatch::Outcome::bad_path;
      return result;
    }
    segments.push_back(std::move(decoded));
  }

  std::vector<std::string> allowed;
  for (const auto& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::vector<std::pair<std::string, std::string>> params;
    bool ok = true;
    for (size_t i = 0; i < segments.size() && ok; ++i) {
      const auto& pattern = route.segments[i];
      if (is_param(pattern)) {
        if (segments[i].empty())
          ok = false;
        else
          params.emplace_back(pattern.substr(1, pattern.size() - 2), segments[i]);
      } else {
        ok = pattern == segments[i];
      }
    }
    if (!ok) continue;
    const bool method_ok = route.method == method || (method == "HEAD" && route.method == "GET");
    if (method_ok) {
      result.outcome = RouteMatch::Outcome::found;
      result.route = &route;
      result.params = std::move(params);
      return result;
    }
    if (std::find(allowed.begin(), allowed.end(), route.method) == allowed.end()) allowed.push_back(route.method);
  }
  if (!allowed.empty()) {
    if (std::find(allowed.begin(), allowed.end(), "GET") != allowed.end()) allowed.push_back("HEAD");
    result.outcome = RouteMatch::Outcome::method_not_allowed;
    for (size_t i = 0; i < allowed.size(); ++i) result.allow += (i ? ", " : "") + allowed[i];
  }
  return result;
}

}  // namespace labelbroker::http
