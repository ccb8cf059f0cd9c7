#pragma once
// Money is integer micro-dollars inside the broker; people write decimal strings ("0.08").
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace labelbroker::common {

// "12", "0.08", "250.000001" -> micro-dollars. Rejects signs, exponents, more than 6 decimals,
// and values over 10^12 dollars. No binary floating point anywhere.
std::optional<std::int64_t> parse_usd_micros(std::string_view text);

// 80000 -> "0.08", 250000000 -> "250.00" (at least two decimals, more only when needed).
std::string format_usd(std::int64_t micros);

}  // namespace labelbroker::common
