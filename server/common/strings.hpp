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

}  // namespace labelbroker::common
