#pragma once
// Retry delays: one definition of "full jitter" for every retry loop in the broker (vendor HTTP
// requests, dispatch of units, webhook deliveries).
#include <chrono>
#include <random>

namespace labelbroker::common {

// Uniform in [0, min(max, initial * 2^(attempt-1))] for the attempt-th failure (attempt >= 1), so
// retries of many callers spread out instead of arriving in waves. Saturates instead of
// overflowing for large attempts.
std::chrono::milliseconds full_jitter_backoff(int attempt, std::chrono::milliseconds initial,
                                              std::chrono::milliseconds max, std::mt19937_64& rng);

}  // namespace labelbroker::common
