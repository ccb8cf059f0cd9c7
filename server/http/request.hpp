#pragma once
// Transport-neutral HTTP request and response, so handlers and domain code never include Beast.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/strings.hpp"

namespace labelbroker::http {

// Case-insensitive header list (HTTP field names are case-insensitive).
class Headers {
 public:
  void add(std::string name, std::string value) { fields_.emplace_back(std::move(name), std::move(value)); }
  // Replaces every field with this name.
  void set(std::string_view name, std::string value);
  std::optional<std::string_view> get(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& all() const { return fields_; }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

using common::iequals;

struct Request {
  std::string method;  // upper case, e.g. "GET"
  std::string target;  // as sent: path plus query
  std::string path;    // path without the query, still percent-encoded (the router decodes segments)
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  Headers headers;
  std::string body;
  std::vector<std::pair<std::string, std::string>> path_params;  // filled by the router
  std::string request_id;
  std::string remote_address;

  std::optional<std::string_view> header(std::string_view name) const { return headers.get(name); }
  std::optional<std::string_view> query_param(std::string_view name) const;
  // Empty string_view when the route has no such parameter.
  std::string_view path_param(std::string_view name) const;
};

// A response body produced a piece at a time (large downloads), so memory stays small whatever
// its size. next() is called on a worker thread (it may block on the database), one piece at a
// time, each written before the next is asked for; it appends up to about `max_bytes` to `out` and
// returns false once the body is complete. The body must be exactly length() bytes.
class BodySource {
 public:
  virtual ~BodySource() = default;
  virtual std::uint64_t length() const = 0;
  virtual bool next(std::string& out, std::size_t max_bytes) = 0;
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
  // Set: the body comes from here instead of `body` (sent with Content-Length: length()).
  std::shared_ptr<BodySource> source;

  static Response json(int status, std::string body);
  static Response text(int status, std::string body, std::string content_type = "text/plain; charset=utf-8");
  // Closes the connection after this response.
  bool close_connection = false;
};

// Splits "target" into the raw path and the decoded query. Returns false for a target that is not a
// valid origin-form (must start with '/', valid percent escapes, no NUL).
// Whether the request's If-None-Match names `etag` (a quoted entity tag): "*", or one of a
// comma-separated list, weak validators (W/"...") compared by their opaque part.
bool if_none_match(const Request& request, std::string_view etag);

bool parse_target(std::string_view target, std::string& path, std::vector<std::pair<std::string, std::string>>& query);

// Decodes %XX escapes (and '+' as space when plus_is_space). False on a bad escape or a NUL byte.
bool percent_decode(std::string_view in, std::string& out, bool plus_is_space);

}  // namespace labelbroker::http
