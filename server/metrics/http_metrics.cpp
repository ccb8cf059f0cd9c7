#include "metrics/http_metrics.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace labelbroker::metrics {

const std::vector<double>& HttpMetrics::duration_bounds() {
  static const std::vector<double> bounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return bounds;
}

void HttpMetrics::attach(const http::Router& router) {
  if (attached_.load()) throw std::logic_error("HttpMetrics::attach called twice");
  const auto& routes = router.routes();
  first_route_ = routes.empty() ? nullptr : routes.data();
  route_count_ = routes.size();
  auto make_slot = [](std::string method, std::string pattern) {
    auto slot = std::make_unique<Slot>();
    slot->method = std::move(method);
    slot->pattern = std::move(pattern);
    slot->by_status = std::make_unique<std::atomic<std::uint64_t>[]>(kStatusSlots);
    slot->buckets = std::make_unique<std::atomic<std::uint64_t>[]>(duration_bounds().size() + 1);
    for (int i = 0; i < kStatusSlots; ++i) slot->by_status[i].store(0, std::memory_order_relaxed);
    for (std::size_t i = 0; i <= duration_bounds().size(); ++i) slot->buckets[i].store(0, std::memory_order_relaxed);
    return slot;
  };
  for (const auto& route : routes) slots_.push_back(make_slot(route.method, route.pattern));
  slots_.push_back(make_slot("", "unmatched"));
  attached_.store(true, std::memory_order_release);
}

HttpMetrics::Slot& HttpMetrics::slot_for(const http::Route* route) {
  if (route && first_route_ && route >= first_route_ && route < first_route_ + route_count_)
    return *slots_[static_cast<std::size_t>(route - first_route_)];
  return *slots_.back();
}

void HttpMetrics::record(const http::Route* route, int status, double seconds) {
  if (!attached_.load(std::memory_order_acquire)) return;
  Slot& slot = slot_for(route);
  const int index = std::clamp(status, kMinStatus, kMinStatus + kStatusSlots - 1) - kMinStatus;
  slot.by_status[index].fetch_add(1, std::memory_order_relaxed);
  const auto& bounds = duration_bounds();
  const auto bucket =
      static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin());
  slot.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  slot.sum_nanos.fetch_add(static_cast<std::uint64_t>(std::llround(std::max(0.0, seconds) * 1e9)),
                           std::memory_order_relaxed);
}

void HttpMetrics::render(Writer& out) const {
  if (!attached_.load(std::memory_order_acquire)) return;
  out.family("labelbroker_http_requests_total", Type::counter,
             "HTTP requests answered, by method and route pattern (route=\"unmatched\": no route matched) and status.");
  char status_text[4];
  for (const auto& slot : slots_) {
    for (int i = 0; i < kStatusSlots; ++i) {
      const auto n = slot->by_status[i].load(std::memory_order_relaxed);
      if (n == 0) continue;
      const int status = kMinStatus + i;
      status_text[0] = static_cast<char>('0' + status / 100);
      status_text[1] = static_cast<char>('0' + status / 10 % 10);
      status_text[2] = static_cast<char>('0' + status % 10);
      status_text[3] = 0;
      out.sample("labelbroker_http_requests_total",
                 {{"method", slot->method}, {"route", slot->pattern}, {"status", std::string_view(status_text, 3)}}, n);
    }
  }
  out.family("labelbroker_http_request_duration_seconds", Type::histogram,
             "Time from reading a request's header to writing the last byte of its response, by route.");
  const auto& bounds = duration_bounds();
  std::vector<std::uint64_t> counts(bounds.size() + 1);
  for (const auto& slot : slots_) {
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < counts.size(); ++i)
      total += counts[i] = slot->buckets[i].load(std::memory_order_relaxed);
    // Routes never requested stay out of the page rather than adding 17 lines of zeros each.
    if (total == 0) continue;
    const double sum = static_cast<double>(slot->sum_nanos.load(std::memory_order_relaxed)) / 1e9;
    out.histogram("labelbroker_http_request_duration_seconds", {{"method", slot->method}, {"route", slot->pattern}},
                  bounds, counts, sum);
  }
}

}  // namespace labelbroker::metrics
