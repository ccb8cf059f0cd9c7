#pragma once
// Vendor scores for dashboards, from rollup totals over a window: gold accuracy with its credible
// interval, Dawid-Skene accuracy, agreement and kappa with every other vendor, cost per item and
// per correct label, latency quantiles, on-time and error rates, volume, share and spend, and the
// market view (shares, HHI, effective number of vendors).
//
// Pure: the caller reads the totals (db/quality_store) and renders the report (api). Every rate
// whose denominator is zero is nullopt ("no evidence"), never 0.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "quality/beta_posterior.hpp"
#include "quality/market.hpp"

namespace labelbroker::quality {

// Rollup sums for one vendor over the window. Quality fields are pooled over all teams; volume
// fields (items, spend) are the asking team's own.
struct VendorTotals {
  std::string vendor_id;
  std::int64_t judgments = 0;     // answers to real items, all teams
  std::int64_t gold_n = 0;
  std::int64_t gold_correct = 0;
  std::int64_t cost_micros = 0;   // all answers (real and gold), all teams
  std::int64_t answers = 0;       // real and gold answers the cost is spread over
  std::int64_t on_time = 0;
  std::int64_t sends = 0;
  std::int64_t errors = 0;
  std::int64_t ds_n = 0;
  double ds_correct = 0;
  LatencyHistogram latency;
  std::int64_t team_items = 0;        // the team's real answers from this vendor
  std::int64_t team_spend_micros = 0; // what the team was charged (real and gold)
};

// Agreement marginals of one pair over the window, one row per label: how often A gave it, how
// often B did, and how often both did on the same item.
struct PairLabelTotals {
  std::string vendor_a, vendor_b;  // vendor_a < vendor_b
  std::string label;
  std::int64_t a_count = 0, b_count = 0, agree = 0;
};

struct PairScore {
  std::string other_vendor;
  std::int64_t items = 0;
  double agreement = 0;
  std::optional<double> kappa;
};

struct VendorScore {
  std::string vendor_id;
  AccuracyEstimate gold;
  std::optional<double> ds_accuracy;
  std::int64_t ds_judgments = 0;
  std::vector<PairScore> agreement;  // every other vendor it shares items with, by vendor id
  std::optional<std::int64_t> cost_per_item_micros;
  // Cost per item / estimated accuracy (Dawid-Skene when it has evidence, else gold mean).
  std::optional<std::int64_t> cost_per_correct_label_micros;
  std::optional<double> latency_p50_ms, latency_p95_ms;
  std::optional<double> on_time_rate;
  std::optional<double> error_rate;  // units refused or failed / units sent
  std::int64_t judgments = 0;        // all teams, for the evidence behind the rates
  std::int64_t items = 0;            // the team's
  double share = 0;                  // of the team's items in the window
  std::int64_t spend_micros = 0;     // the team's
};

struct Market {
  std::int64_t items = 0;
  std::vector<std::pair<std::string, double>> shares;  // vendor, share (order of `vendors`)
  double hhi = 0;
  double effective_vendors = 0;
};

struct ScoreReport {
  std::vector<VendorScore> vendors;
  Market market;
};

// Cohen's kappa from per-label marginals: po = sum agree / n, pe = sum a*b / n^2 (n = sum of
// a_count). nullopt when n == 0 or pe == 1.
PairScore pair_score_from_marginals(const std::vector<PairLabelTotals>& rows);

// `vendors` fixes the order (configuration order) and which vendors appear; totals and pairs of
// vendors not listed are ignored.
ScoreReport compute_scores(const std::vector<VendorTotals>& vendors, const std::vector<PairLabelTotals>& pairs,
                           BetaPrior prior);

}  // namespace labelbroker::quality
