#include "common/money.hpp"

namespace labelbroker::common {

std::optional<std::int64_t> parse_usd_micros(std::string_view text) {
  const auto dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
  if (whole.empty() || whole.size() > 12 || fraction.size() > 6) return std::nullopt;
  if (dot != std::string_view::npos && fraction.empty()) return std::nullopt;
  std::int64_t micros = 0;
  for (char c : whole) {
    if (c < '0' || c > '9') return std::nullopt;
    micros = micros * 10 + (c - '0');
  }
  micros *= 1000000;
  std::int64_t scale = 100000;
  for (char c : fraction) {
    if (c < '0' || c > '9') return std::nullopt;
    micros += (c - '0') * scale;
    scale /= 10;
  }
  return micros;
}

std::string format_usd(std::int64_t micros) {
  const bool negative = micros < 0;
  const std::uint64_t abs = negative ? static_cast<std::uint64_t>(-(micros + 1)) + 1 : static_cast<std::uint64_t>(micros);
  std::string fraction = std::to_string(abs % 1000000);
  fraction.insert(0, 6 - fraction.size(), '0');
  while (fraction.size() > 2 && fraction.back() == '0') fraction.pop_back();
  return (negative ? "-" : "") + std::to_string(abs / 1000000) + "." + fraction;
}

}  // namespace labelbroker::common
