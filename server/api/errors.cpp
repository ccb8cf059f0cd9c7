#include "api/errors.hpp"

#include "db/errors.hpp"
#include "http/problem.hpp"

namespace labelbroker::api {
namespace {

std::string slug_for(int status) {
  switch (status) {
    case 409:
      return "conflict";
    case 422:
      return "constraint-violation";
    case 503:
      return "service-unavailable";
    default:
      return "internal-error";
  }
}

}  // namespace

std::optional<http::Response> map_exception(const std::exception& error, const http::Request& request) {
  const db::DbFailure failure = db::classify_db_error(error);
  if (failure.http_status == 500) return std::nullopt;
  http::Response response = http::problem(failure.http_status, slug_for(failure.http_status), failure.title,
                                          failure.detail + " (request id " + request.request_id + ")");
  if (failure.retry_after_seconds > 0) response.headers.set("Retry-After", std::to_string(failure.retry_after_seconds));
  return response;
}

}  // namespace labelbroker::api
