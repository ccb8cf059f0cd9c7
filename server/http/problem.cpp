#include "http/problem.hpp"

#include <nlohmann/json.hpp>

namespace labelbroker::http {

Response problem(int status, std::string_view slug, std::string_view title, std::string_view detail,
                 const std::vector<FieldError>& errors) {
  nlohmann::json body = {
      {"type", "/problems/" + std::string(slug)},
      {"title", title},
      {"status", status},
      {"detail", detail},
  };
  if (!errors.empty()) {
    auto& list = body["errors"] = nlohmann::json::array();
    for (const auto& e : errors) list.push_back({{"pointer", e.pointer}, {"message", e.message}});
  }
  Response r;
  r.status = status;
  r.headers.set("Content-Type", "application/problem+json");
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

std::string json_pointer_escape(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (char c : token) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

}  // namespace labelbroker::http
