#pragma once
// Computed JSON views (GET /v1/vendors/scores, /v1/concentration) reused for a short time per
// key, with an ETag that stays the same while the data does.
//
// Guarantees: at most one computation per key runs at a time. While a stale entry is being
// recomputed, other callers get the stale entry at once; with no entry yet, they wait for the
// computation in flight and share its result or its exception. An entry is fresh for `ttl` from
// when its computation finished, so a computation slower than ttl is still reused afterwards.
// ttl 0 disables caching (every call computes). At most about max_entries keys are kept (keys
// include free-form filters).
// Thread safety: all members may be called concurrently; compute runs without any lock held.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace labelbroker::api {

class ViewCache {
 public:
  using Clock = std::chrono::steady_clock;

  struct Entry {
    std::string body;
    std::string etag;
  };

  explicit ViewCache(std::chrono::milliseconds ttl, std::size_t max_entries = 1000,
                     std::function<Clock::time_point()> now = Clock::now);

  // compute() renders the view as JSON; its exceptions propagate to every caller waiting on it.
  std::shared_ptr<const Entry> get(const std::string& key, const std::function<std::string()>& compute);

  // The entry for `key` if it is fresh; null otherwise. Never computes or waits.
  std::shared_ptr<const Entry> fresh(const std::string& key) const;

  std::size_t size() const;

 private:
  struct Flight {
    bool done = false;
    std::shared_ptr<const Entry> entry;
    std::exception_ptr error;
  };
  struct Slot {
    std::shared_ptr<const Entry> entry;
    Clock::time_point computed_at;
    std::shared_ptr<Flight> flight;  // the computation in progress, if any
  };

  std::chrono::milliseconds ttl_;
  std::size_t max_entries_;
  std::function<Clock::time_point()> now_;
  mutable std::shared_mutex mutex_;
  std::condition_variable_any finished_;
  std::unordered_map<std::string, Slot> slots_;
};

// The body with every non-integer number rounded to 9 significant digits (and magnitudes below
// 1e-12 written as 0), so that doubles PostgreSQL sums in a different order render the same.
// Text that is not JSON is returned unchanged.
std::string round_json_numbers(std::string_view body);

// A strong ETag ("\"<32 hex digits>\"") for a body.
std::string body_etag(std::string_view body);

}  // namespace labelbroker::api
