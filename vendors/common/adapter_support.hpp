#pragma once
// Helpers every adapter uses to turn vendor HTTP outcomes into VendorError classes and to read
// vendor JSON defensively (a malformed body is an error value, never an exception escaping
// unclassified).
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vendors/adapter.hpp"
#include "vendors/common/http_client.hpp"

namespace labelbroker::vendors {

// The class of a failed outcome: transport failure or non-2xx status. `what` names the operation
// for the message ("create task", "poll task t-1").
VendorError classify_failure(const HttpOutcome& outcome, std::string_view vendor_id, std::string_view what);

// True for a 2xx response.
bool succeeded(const HttpOutcome& outcome);

// Parses the body as JSON; nullopt for invalid JSON (including HTML error pages).
std::optional<nlohmann::json> parse_body(const InboundResponse& response);

// Typed field access that never throws: nullopt when absent or of another type.
std::optional<std::string> string_field(const nlohmann::json& object, std::string_view key);
std::optional<double> number_field(const nlohmann::json& object, std::string_view key);

// Records `error` as the failure of every unit in `group` (a batch the vendor refused as a whole).
void fail_all(const std::vector<const WorkUnit*>& group, const VendorError& error, SubmitResult& result);

// Fetches each unit with its own GET, all in flight at once (the client caps concurrency), and
// turns each answer into a UnitResult with `to_result`. Units the vendor answers 404 for are left
// out. Any other failure throws a classified VendorError; an unreadable body is permanent.
std::vector<UnitResult> poll_each(HttpClient& client, const std::vector<UnitRef>& units,
                                  const std::function<OutboundRequest(const UnitRef&)>& request_for,
                                  std::string_view vendor_id,
                                  const std::function<UnitResult(const nlohmann::json&)>& to_result);

// VendorError{permanent} "<vendor>: malformed response: <what>".
VendorError malformed_response(std::string_view vendor_id, const std::string& what);

// Sets completed_at and time_spent from RFC 3339 texts (either may be absent or invalid).
void set_completion_times(UnitResult& result, const std::optional<std::string>& created_at,
                          const std::optional<std::string>& completed_at);

// Percent-encodes a query parameter value.
std::string url_encode(std::string_view value);

}  // namespace labelbroker::vendors
