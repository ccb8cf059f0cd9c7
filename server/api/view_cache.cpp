#include "api/view_cache.hpp"

#include <charconv>
#include <cmath>
#include <iterator>
#include <mutex>

#include <nlohmann/json.hpp>

#include "common/crypto.hpp"

namespace labelbroker::api {
namespace {

using json = nlohmann::json;

// Nine digits keep every figure a dashboard shows (rates, intervals, kappa, HHI) far beyond what
// it displays, while the summation order of PostgreSQL's parallel aggregates only moves the last
// two or three digits of a double. Below 1e-12 a value is a residue of such a sum where the exact
// answer is 0 (e.g. agreement minus chance agreement), not a measurement.
double round_significant(double value) {
  if (!std::isfinite(value)) return value;
  if (std::fabs(value) < 1e-12) return 0.0;
  char text[32];
  const auto written = std::to_chars(text, text + sizeof text, value, std::chars_format::general, 9);
  double rounded = value;
  std::from_chars(text, written.ptr, rounded);
  return rounded;
}

void round_numbers(json& value) {
  if (value.is_number_float()) {
    value = round_significant(value.get<double>());
  } else if (value.is_structured()) {
    for (auto& child : value) round_numbers(child);
  }
}

std::shared_ptr<const ViewCache::Entry> make_entry(std::string body) {
  auto entry = std::make_shared<ViewCache::Entry>();
  entry->body = round_json_numbers(body);
  entry->etag = body_etag(entry->body);
  return entry;
}

}  // namespace

std::string round_json_numbers(std::string_view body) {
  json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::string(body);
  round_numbers(parsed);
  return parsed.dump();
}

std::string body_etag(std::string_view body) { return "\"" + common::sha256_hex(body).substr(0, 32) + "\""; }

ViewCache::ViewCache(std::chrono::milliseconds ttl, std::size_t max_entries, std::function<Clock::time_point()> now)
    : ttl_(ttl), max_entries_(max_entries), now_(std::move(now)) {}

std::shared_ptr<const ViewCache::Entry> ViewCache::get(const std::string& key,
                                                       const std::function<std::string()>& compute) {
  if (ttl_.count() <= 0) return make_entry(compute());
  {
    std::shared_lock lock(mutex_);
    if (auto it = slots_.find(key); it != slots_.end() && it->second.entry &&
                                    (it->second.flight || now_() - it->second.computed_at < ttl_))
      return it->second.entry;  // fresh, or stale while another caller recomputes it
  }
  std::shared_ptr<Flight> flight;
  {
    std::unique_lock lock(mutex_);
    auto& slot = slots_[key];
    if (slot.entry && (slot.flight || now_() - slot.computed_at < ttl_)) return slot.entry;
    if (slot.flight) {
      // Nothing to serve yet: share the computation in flight rather than start another.
      auto waiting = slot.flight;
      finished_.wait(lock, [&] { return waiting->done; });
      if (waiting->error) std::rethrow_exception(waiting->error);
      return waiting->entry;
    }
    flight = slot.flight = std::make_shared<Flight>();
  }

  std::shared_ptr<const Entry> entry;
  std::exception_ptr error;
  try {
    entry = make_entry(compute());
  } catch (...) {
    error = std::current_exception();
  }
  {
    std::unique_lock lock(mutex_);
    flight->done = true;
    flight->entry = entry;
    flight->error = error;
    auto& slot = slots_[key];
    slot.flight.reset();
    if (entry) {
      // Fresh from now, not from when the computation started: a computation slower than ttl
      // would otherwise be stored already expired and never be reused.
      slot.entry = entry;
      slot.computed_at = now_();
    }
    if (slots_.size() > max_entries_) {
      for (auto it = slots_.begin(); it != slots_.end();)
        it = it->first != key && !it->second.flight ? slots_.erase(it) : std::next(it);
    }
    if (!entry) {
      if (auto it = slots_.find(key); it != slots_.end() && !it->second.entry) slots_.erase(it);
    }
  }
  finished_.notify_all();
  if (error) std::rethrow_exception(error);
  return entry;
}

std::shared_ptr<const ViewCache::Entry> ViewCache::fresh(const std::string& key) const {
  const auto now = now_();
  std::shared_lock lock(mutex_);
  auto it = slots_.find(key);
  if (it == slots_.end() || !it->second.entry || now - it->second.computed_at >= ttl_) return nullptr;
  return it->second.entry;
}

std::size_t ViewCache::size() const {
  std::shared_lock lock(mutex_);
  return slots_.size();
}

}  // namespace labelbroker::api
