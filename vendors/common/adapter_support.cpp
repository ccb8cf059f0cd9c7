#include "vendors/common/adapter_support.hpp"

#include "common/time.hpp"

namespace labelbroker::vendors {

bool succeeded(const HttpOutcome& outcome) {
  return outcome.response && outcome.response->status >= 200 && outcome.response->status < 300;
}

VendorError classify_failure(const HttpOutcome& outcome, std::string_view vendor_id, std::string_view what) {
  const std::string prefix = std::string(vendor_id) + ": " + std::string(what) + ": ";
  if (!outcome.response) {
    const bool permanent = outcome.failure == TransportFailure::bad_url || outcome.failure == TransportFailure::tls ||
                           outcome.failure == TransportFailure::too_large;
    return VendorError(permanent ? ErrorClass::permanent : ErrorClass::retryable,
                       prefix + std::string(to_string(outcome.failure)) + ": " + outcome.error);
  }
  const auto& r = *outcome.response;
  std::optional<std::chrono::milliseconds> retry_after;
  if (auto h = r.header("Retry-After")) retry_after = parse_retry_after(*h);
  // Vendors put a message in "error" (Scale, Surge) or "detail"; keep it short in our logs.
  std::string message = "HTTP " + std::to_string(r.status);
  if (auto body = parse_body(r); body && body->is_object()) {
    if (auto m = string_field(*body, "error"))
      message += ": " + m->substr(0, 200);
    else if (auto d = string_field(*body, "detail"))
      message += ": " + d->substr(0, 200);
  }
  ErrorClass error_class = ErrorClass::permanent;
  if (r.status == 401 || r.status == 403)
    error_class = ErrorClass::auth;
  else if (r.status == 409)
    error_class = ErrorClass::duplicate;
  else if (r.status == 408 || r.status == 429 || r.status >= 500)
    error_class = ErrorClass::retryable;
  else if (r.status == 402)
    error_class = ErrorClass::capacity;  // Scale: out of credit
  return VendorError(error_class, prefix + message, r.status, retry_after);
}

std::optional<nlohmann::json> parse_body(const InboundResponse& response) {
  auto parsed = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

std::optional<std::string> string_field(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<double> number_field(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

void fail_all(const std::vector<const WorkUnit*>& group, const VendorError& error, SubmitResult& result) {
  for (const auto* unit : group)
    result.failed.push_back({unit->assignment_id, error.error_class(), error.what(), error.retry_after()});
}

std::vector<UnitResult> poll_each(HttpClient& client, const std::vector<UnitRef>& units,
                                  const std::function<OutboundRequest(const UnitRef&)>& request_for,
                                  std::string_view vendor_id,
                                  const std::function<UnitResult(const nlohmann::json&)>& to_result) {
  std::vector<std::future<HttpOutcome>> pending;
  pending.reserve(units.size());
  for (const auto& unit : units) pending.push_back(client.send(request_for(unit)));
  std::vector<UnitResult> out;
  for (size_t i = 0; i < units.size(); ++i) {
    auto outcome = pending[i].get();
    if (outcome.response && outcome.response->status == 404) continue;
    const std::string what = "poll " + units[i].vendor_task_id;
    if (!succeeded(outcome)) throw classify_failure(outcome, vendor_id, what);
    auto body = parse_body(*outcome.response);
    if (!body || !body->is_object()) throw malformed_response(vendor_id, what);
    out.push_back(to_result(*body));
  }
  return out;
}

VendorError malformed_response(std::string_view vendor_id, const std::string& what) {
  return VendorError(ErrorClass::permanent, std::string(vendor_id) + ": malformed response: " + what);
}

void set_completion_times(UnitResult& result, const std::optional<std::string>& created_at,
                          const std::optional<std::string>& completed_at) {
  auto created = common::parse_rfc3339(created_at.value_or(""));
  auto completed = common::parse_rfc3339(completed_at.value_or(""));
  if (completed) result.completed_at = completed;
  if (created && completed && *completed >= *created)
    result.time_spent = std::chrono::duration_cast<std::chrono::milliseconds>(*completed - *created);
}

std::string url_encode(std::string_view value) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace labelbroker::vendors
