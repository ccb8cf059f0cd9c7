#pragma once
// Small string helpers shared by the HTTP server, the vendor client and the adapters.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace labelbroker::common {

// ASCII case-insensitive equality (HTTP field names, schemes).
bool iequals(std::string_view a, std::string_view b);

// The value of the first field named `name` (case-insensitive) in a list of header fields.
std::optional<std::string_view> find_field(const std::vector<std::pair<std::string, std::string>>& fields,
                                           std::string_view name);

// The canonical text form of a UUID (8-4-4-4-12 hex digits). Ids the broker hands out are UUIDs;
// anything else cannot name one of its rows, and must not reach a ::uuid cast (a 500).
bool is_uuid(std::string_view s);

}  // namespace labelbroker::common
