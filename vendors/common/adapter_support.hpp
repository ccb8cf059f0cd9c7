#pragma once
// Helpers every adapter uses to turn vendor HTTP outcomes into VendorError classes and to read
// vendor JSON defensively (a malformed body is an error value, never an exception escaping
// unclassified).
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

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

// Percent-encodes a query parameter value.
std::string url_encode(std::string_view value);

}  // namespace labelbroker::vendors
