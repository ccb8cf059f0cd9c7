#pragma once
// Request counts and latency histograms per route, recorded lock-free on the request path.
//
// Attached to a finished Router (its routes do not move after start-up): each route gets fixed
// arrays of atomics, found from the Route* the server reports by pointer arithmetic, so record()
// is a handful of relaxed atomic increments and never allocates or locks. It exists before the
// routes are complete (the server that reports to it is built first) and counts nothing until
// attach(). Requests that matched no
// route (404, 405, a bad path) share one slot, labelled route="unmatched".
//
// Thread safety: record() and render() may run concurrently from any threads; render() reads each
// counter once, so a page may show a request in one series and not yet in another.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "http/router.hpp"
#include "metrics/exposition.hpp"

namespace labelbroker::metrics {

class HttpMetrics {
 public:
  // Upper bounds of the latency buckets, in seconds.
  static const std::vector<double>& duration_bounds();

  HttpMetrics() = default;
  // Sets up the counters for `router`'s routes. Call once, after the last route is added and
  // before any record() (before the server starts); `router` must outlive this object.
  void attach(const http::Router& router);

  // One request, answered with `status` after `seconds`; route null: it matched none.
  void record(const http::Route* route, int status, double seconds);

  // labelbroker_http_requests_total and labelbroker_http_request_duration_seconds.
  void render(Writer& out) const;

 private:
  static constexpr int kMinStatus = 100;
  static constexpr int kStatusSlots = 500;  // 100..599; anything else is counted as 599
  struct Slot {
    std::string method;
    std::string pattern;
    std::unique_ptr<std::atomic<std::uint64_t>[]> by_status;  // kStatusSlots
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets;    // bounds + 1 (+Inf)
    std::atomic<std::uint64_t> sum_nanos{0};
  };
  Slot& slot_for(const http::Route* route);

  std::atomic<bool> attached_{false};
  const http::Route* first_route_ = nullptr;
  std::size_t route_count_ = 0;
  std::vector<std::unique_ptr<Slot>> slots_;  // one per route, then the unmatched slot
};

}  // namespace labelbroker::metrics
