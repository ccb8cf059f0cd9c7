#pragma once
// Small string helpers shared by the HTTP server, the vendor client and the adapters.
#include <cstdint>
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

// A whole string of decimal digits as a number (query parameters, path segments, Range bounds);
// nullopt for anything else: empty, a sign, spaces, or a value that does not fit.
std::optional<std::uint64_t> parse_uint(std::string_view s);

// An Idempotency-Key header value the broker accepts: 1 to 255 visible ASCII characters.
bool is_idempotency_key(std::string_view s);

// A team name or vendor id: 1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter
// or digit (the CHECK constraint on teams.name, so an error is ours, not the database's).
bool is_slug(std::string_view s);

}  // namespace labelbroker::common
