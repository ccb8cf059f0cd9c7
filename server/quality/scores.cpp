#include "quality/scores.hpp"

#include <cmath>
#include <map>

namespace labelbroker::quality {

PairScore pair_score_from_marginals(const std::vector<PairLabelTotals>& rows) {
  PairScore score;
  std::int64_t agree = 0, b_total = 0;
  for (const auto& r : rows) {
    score.items += r.a_count;
    b_total += r.b_count;
    agree += r.agree;
  }
  if (score.items == 0) return score;
  const double n = static_cast<double>(score.items);
  score.agreement = static_cast<double>(agree) / n;
  double pe = 0;
  for (const auto& r : rows) pe += (static_cast<double>(r.a_count) / n) * (static_cast<double>(r.b_count) / n);
  if (pe < 1.0 && b_total == score.items) score.kappa = (score.agreement - pe) / (1.0 - pe);
  return score;
}

ScoreReport compute_scores(const std::vector<VendorTotals>& vendors, const std::vector<PairLabelTotals>& pairs,
                           BetaPrior prior) {
  ScoreReport report;
  std::map<std::pair<std::string, std::string>, std::vector<PairLabelTotals>> by_pair;
  for (const auto& p : pairs) by_pair[{p.vendor_a, p.vendor_b}].push_back(p);

  std::vector<std::int64_t> team_items;
  for (const auto& v : vendors) {
    VendorScore s;
    s.vendor_id = v.vendor_id;
    s.gold = gold_accuracy(v.gold_correct, v.gold_n, prior);
    s.ds_judgments = v.ds_n;
    if (v.ds_n > 0) s.ds_accuracy = v.ds_correct / static_cast<double>(v.ds_n);
    for (const auto& other : vendors) {
      if (other.vendor_id == v.vendor_id) continue;
      const bool first = v.vendor_id < other.vendor_id;
      auto it = by_pair.find(first ? std::make_pair(v.vendor_id, other.vendor_id)
                                   : std::make_pair(other.vendor_id, v.vendor_id));
      if (it == by_pair.end()) continue;
      auto score = pair_score_from_marginals(it->second);
      if (score.items == 0) continue;
      score.other_vendor = other.vendor_id;
      s.agreement.push_back(std::move(score));
    }
    if (v.answers > 0) {
      s.cost_per_item_micros = std::llround(static_cast<double>(v.cost_micros) / static_cast<double>(v.answers));
      const double accuracy = s.ds_accuracy ? *s.ds_accuracy : (v.gold_n > 0 ? s.gold.mean : 0.0);
      if (accuracy > 0)
        s.cost_per_correct_label_micros = std::llround(static_cast<double>(*s.cost_per_item_micros) / accuracy);
    }
    s.latency_p50_ms = v.latency.quantile(0.50);
    s.latency_p95_ms = v.latency.quantile(0.95);
    const auto timed = v.judgments + v.gold_n;
    if (timed > 0) s.on_time_rate = static_cast<double>(v.on_time) / static_cast<double>(timed);
    if (v.sends + v.errors > 0)
      s.error_rate = static_cast<double>(v.errors) / static_cast<double>(v.sends + v.errors);
    s.judgments = v.judgments;
    s.items = v.team_items;
    s.spend_micros = v.team_spend_micros;
    team_items.push_back(v.team_items);
    report.vendors.push_back(std::move(s));
  }
  const auto market = market_concentration(team_items);
  report.market.items = market.total;
  report.market.hhi = market.hhi;
  report.market.effective_vendors = market.effective_vendors;
  for (std::size_t i = 0; i < report.vendors.size(); ++i) {
    report.vendors[i].share = market.shares[i];
    report.market.shares.emplace_back(report.vendors[i].vendor_id, market.shares[i]);
  }
  return report;
}

}  // namespace labelbroker::quality
