#pragma once
// Time helpers. Domain code takes a Clock so tests can control time.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace labelbroker::common {

// Abstract wall clock; implementations must be thread safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point now() const = 0;
};

class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override { return std::chrono::system_clock::now(); }
};

// RFC 3339 in UTC: 2026-11-28T01:02:03Z, or with milliseconds 2026-11-28T01:02:03.456Z.
std::string format_rfc3339(std::chrono::system_clock::time_point t, bool with_millis = false);

// Years parse_rfc3339 accepts: those system_clock's 64-bit nanoseconds hold whole.
inline constexpr int kMinYear = 1678;
inline constexpr int kMaxYear = 2261;

// Parses RFC 3339 with 'Z' or a numeric offset and optional fractional seconds; nullopt for
// anything else, including years outside kMinYear..kMaxYear.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

}  // namespace labelbroker::common
