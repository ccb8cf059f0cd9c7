#pragma once
// application/problem+json responses (RFC 9457). Every error the API returns goes through here so
// clients can rely on {type, title, status, detail[, errors]} everywhere.
#include <string>
#include <string_view>
#include <vector>

#include "http/request.hpp"

namespace labelbroker::http {

// One problem with one field of the request body, located by a JSON Pointer (RFC 6901).
struct FieldError {
  std::string pointer;
  std::string message;
};

// `slug` names the problem type; the type URI is "/problems/<slug>" (see docs/errors.md).
Response problem(int status, std::string_view slug, std::string_view title, std::string_view detail,
                 const std::vector<FieldError>& errors = {});

// Escapes a JSON Pointer reference token ("~" -> "~0", "/" -> "~1").
std::string json_pointer_escape(std::string_view token);

}  // namespace labelbroker::http
