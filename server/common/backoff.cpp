#include "common/backoff.hpp"

#include <algorithm>
#include <cstdint>

namespace labelbroker::common {

std::chrono::milliseconds full_jitter_backoff(int attempt, std::chrono::milliseconds initial,
                                              std::chrono::milliseconds max, std::mt19937_64& rng) {
  const int doublings = std::clamp(attempt - 1, 0, 20);
  const std::int64_t ceiling =
      std::max<std::int64_t>(0, std::min<std::int64_t>(max.count(), initial.count() << doublings));
  std::uniform_int_distribution<std::int64_t> pick(0, ceiling);
  return std::chrono::milliseconds(pick(rng));
}

}  // namespace labelbroker::common
