#pragma once
// Maps exceptions that escape handlers to problem+json: database failures through
// db::classify_db_error (409, 422, 503 with Retry-After), everything else to nothing (the server
// answers 500 and logs the cause).
#include <exception>
#include <optional>

#include "http/request.hpp"

namespace labelbroker::api {

std::optional<http::Response> map_exception(const std::exception& error, const http::Request& request);

}  // namespace labelbroker::api
