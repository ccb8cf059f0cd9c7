#include "quality/market.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

namespace labelbroker::quality {

MarketConcentration market_concentration(const std::vector<std::int64_t>& item_counts) {
  MarketConcentration out;
  for (auto c : item_counts) {
    if (c < 0) throw std::invalid_argument("market_concentration: negative item count " + std::to_string(c));
    out.total += c;
  }
  out.shares.assign(item_counts.size(), 0.0);
  if (out.total == 0) return out;
  double sum_squares = 0;
  for (std::size_t v = 0; v < item_counts.size(); ++v) {
    out.shares[v] = static_cast<double>(item_counts[v]) / static_cast<double>(out.total);
    sum_squares += out.shares[v] * out.shares[v];
  }
  out.hhi = 10000 * sum_squares;
  out.effective_vendors = 1 / sum_squares;
  return out;
}

LatencyHistogram LatencyHistogram::from_counts(std::vector<std::int64_t> counts) {
  if (counts.size() != kLatencyBucketsMs.size())
    throw std::invalid_argument("LatencyHistogram: expected " + std::to_string(kLatencyBucketsMs.size()) +
                                " bucket counts, got " + std::to_string(counts.size()));
  for (auto c : counts)
    if (c < 0) throw std::invalid_argument("LatencyHistogram: negative bucket count " + std::to_string(c));
  LatencyHistogram h;
  h.counts_ = std::move(counts);
  return h;
}

void LatencyHistogram::add(double ms) {
  if (std::isnan(ms)) throw std::invalid_argument("LatencyHistogram: latency is NaN");
  std::size_t b = 0;
  while (ms > kLatencyBucketsMs[b]) ++b;  // stops at the +infinity bucket at the latest
  ++counts_[b];
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (std::size_t b = 0; b < counts_.size(); ++b) counts_[b] += other.counts_[b];
}

std::int64_t LatencyHistogram::total() const {
  std::int64_t n = 0;
  for (auto c : counts_) n += c;
  return n;
}

std::optional<double> LatencyHistogram::quantile(double q) const {
  if (!(q >= 0 && q <= 1))
    throw std::invalid_argument("LatencyHistogram: quantile must be in [0, 1], got " + std::to_string(q));
  const std::int64_t n = total();
  if (n == 0) return std::nullopt;
  const double rank = q * static_cast<double>(n);
  std::int64_t below = 0;
  for (std::size_t b = 0; b < counts_.size(); ++b) {
    // Empty buckets are skipped so that q = 0 lands in the first bucket that has data.
    if (counts_[b] == 0 || static_cast<double>(below + counts_[b]) < rank) {
      below += counts_[b];
      continue;
    }
    if (b + 1 == counts_.size()) return kLatencyBucketsMs[b - 1];
    const double lower = b == 0 ? 0.0 : kLatencyBucketsMs[b - 1];
    const double upper = kLatencyBucketsMs[b];
    return lower + (upper - lower) * (rank - static_cast<double>(below)) / static_cast<double>(counts_[b]);
  }
  // Not reached: rank <= total, so the loop returns at the last non-empty bucket at the latest.
  return kLatencyBucketsMs[kLatencyBucketsMs.size() - 2];
}

}  // namespace labelbroker::quality
