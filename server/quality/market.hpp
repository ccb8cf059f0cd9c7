#pragma once
// How concentrated a team's work is across vendors (shares, Herfindahl-Hirschman index, effective
// number of vendors), and a fixed-bucket latency histogram whose bucket counts rollups store and
// add up.
//
// Guarantees: pure (no I/O, no clock, no randomness). LatencyHistogram is a plain value type:
// copies are independent, const use is safe from several threads, mutation needs one owner.
// Its buckets never change at run time (kLatencyBucketsMs), so stored count vectors from different
// processes and days can always be merged. Malformed input (negative counts, a count vector of the
// wrong length, NaN latencies, q outside [0, 1]) throws std::invalid_argument.
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace labelbroker::quality {

struct MarketConcentration {
  std::int64_t total = 0;        // items over all vendors
  std::vector<double> shares;    // per vendor, in input order; all 0 when total == 0
  double hhi = 0;                // sum of (100 * share)^2, in [0, 10000]; 0 when total == 0
  double effective_vendors = 0;  // 1 / sum of share^2; 0 when total == 0
};

// From per-vendor item counts (vendors with 0 items may be listed; they change nothing but shares).
MarketConcentration market_concentration(const std::vector<std::int64_t>& item_counts);

// Upper bounds (inclusive, Prometheus "le") of the latency buckets in milliseconds; the last is
// +infinity. Append-only in spirit: changing it makes stored rollups unreadable.
inline constexpr std::array<double, 14> kLatencyBucketsMs = {
    50,    100,   250,   500,    1000,   2500,    5000,
    10000, 30000, 60000, 300000, 900000, 3600000, std::numeric_limits<double>::infinity()};

class LatencyHistogram {
 public:
  LatencyHistogram() : counts_(kLatencyBucketsMs.size(), 0) {}
  // Rebuilds a histogram from stored per-bucket counts (not cumulative), one per bucket.
  static LatencyHistogram from_counts(std::vector<std::int64_t> counts);

  // Counts one latency in the first bucket whose bound is >= ms. Negative values (clock steps)
  // count in the first bucket.
  void add(double ms);
  void merge(const LatencyHistogram& other);

  const std::vector<std::int64_t>& counts() const { return counts_; }  // per bucket, not cumulative
  std::int64_t total() const;

  // Estimate of the q-quantile in ms the way Prometheus' histogram_quantile does it: find the
  // bucket holding rank q * total and interpolate linearly between its lower bound (the previous
  // bound, 0 for the first) and its upper bound, assuming latencies spread evenly inside it. A rank
  // in the +infinity bucket returns the largest finite bound. Accurate to the bucket width only.
  // nullopt when the histogram is empty.
  std::optional<double> quantile(double q) const;

 private:
  std::vector<std::int64_t> counts_;
};

}  // namespace labelbroker::quality
