#include "routing/allocation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace labelbroker::routing {

namespace {

// Slack for comparing sums of shares with 1: n * (1 / n) need not be exactly 1 in doubles.
constexpr double kShareEps = 1e-12;
// Floor for a sampled accuracy, so a draw of exactly 0 gives a huge, not infinite, cost per correct.
constexpr double kMinAccuracy = 1e-12;

void check_share(double value, const char* what) {
  if (!std::isfinite(value) || value < 0 || value > 1)
    throw std::invalid_argument(std::string("allocation: ") + what + " must be in [0, 1], got " +
                                std::to_string(value));
}

}  // namespace

const char* to_string(Optimize optimize) {
  switch (optimize) {
    case Optimize::quality:
      return "quality";
    case Optimize::cost:
      return "cost";
    case Optimize::balanced:
      return "balanced";
  }
  return "unknown";
}

std::optional<Optimize> parse_optimize(std::string_view text) {
  if (text == "quality") return Optimize::quality;
  if (text == "cost") return Optimize::cost;
  if (text == "balanced") return Optimize::balanced;
  return std::nullopt;
}

std::vector<double> softmax(const std::vector<double>& scores, double temperature) {
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw std::invalid_argument("allocation: temperature must be positive and finite, got " +
                                std::to_string(temperature));
  std::vector<double> out(scores.size());
  if (scores.empty()) return out;
  double top = -std::numeric_limits<double>::infinity();
  for (double s : scores) {
    if (!std::isfinite(s)) throw std::invalid_argument("allocation: scores must be finite");
    top = std::max(top, s);
  }
  double sum = 0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    out[i] = std::exp((scores[i] - top) / temperature);  // the top score gives exp(0) = 1, so sum >= 1
    sum += out[i];
  }
  for (double& x : out) x /= sum;
  return out;
}

BoxProjection project_to_box(const std::vector<double>& weights, double min_share, double max_share) {
  check_share(min_share, "min_share");
  check_share(max_share, "max_share");
  if (min_share > max_share)
    throw std::invalid_argument("allocation: min_share " + std::to_string(min_share) + " exceeds max_share " +
                                std::to_string(max_share));
  for (double w : weights)
    if (!std::isfinite(w) || w < 0) throw std::invalid_argument("allocation: weights must be finite and >= 0");

  BoxProjection out;
  out.effective_max_share = max_share;
  const std::size_t n = weights.size();
  if (n == 0) return out;
  const double count = static_cast<double>(n);
  if (count * min_share > 1 + kShareEps) {
    out.shares.assign(n, 1.0 / count);
    out.min_share_relaxed = true;
    return out;
  }
  double lo = min_share;
  double hi = max_share;
  if (count * hi < 1 - kShareEps) {
    hi = 1.0 / count;
    out.effective_max_share = hi;
    out.cap_unsatisfiable = true;
  }

  std::vector<double> x = weights;
  if (std::all_of(x.begin(), x.end(), [](double w) { return w == 0; })) x.assign(n, 1.0);
  std::size_t positive = 0;
  for (double w : x) positive += w > 0 ? 1 : 0;
  const std::size_t zeros = n - positive;

  out.shares.resize(n);
  // The positive weights all at the cap and the zero ones at the floor still leave mass over:
  // no scaling can place it, so the zero-weight vendors share it equally (still <= hi, as n*hi >= 1).
  const double reachable = static_cast<double>(positive) * hi + static_cast<double>(zeros) * lo;
  if (reachable < 1) {
    const double extra = (1 - reachable) / static_cast<double>(zeros);
    for (std::size_t i = 0; i < n; ++i) out.shares[i] = x[i] > 0 ? hi : lo + extra;
    return out;
  }

  // g(k) = sum clamp(k * x_i, lo, hi) is continuous, non-decreasing and linear between the
  // breakpoints lo / x_i and hi / x_i; find the segment where it crosses 1 and solve there.
  auto g = [&](double k) {
    double sum = 0;
    for (double w : x) sum += std::clamp(k * w, lo, hi);
    return sum;
  };
  std::vector<double> breaks;
  breaks.reserve(2 * positive + 1);
  breaks.push_back(0);
  for (double w : x) {
    if (w > 0) {
      breaks.push_back(lo / w);
      breaks.push_back(hi / w);
    }
  }
  std::sort(breaks.begin(), breaks.end());
  double k = breaks.back();
  double prev = breaks.front();
  double g_prev = g(prev);
  if (g_prev < 1) {
    for (std::size_t b = 1; b < breaks.size(); ++b) {
      const double g_here = g(breaks[b]);
      if (g_here >= 1) {
        k = g_here == g_prev ? breaks[b] : prev + (1 - g_prev) * (breaks[b] - prev) / (g_here - g_prev);
        break;
      }
      prev = breaks[b];
      g_prev = g_here;
    }
  } else {
    k = prev;
  }
  for (std::size_t i = 0; i < n; ++i) out.shares[i] = std::clamp(k * x[i], lo, hi);
  return out;
}

Decision decide_shares(const std::vector<VendorInput>& vendors, const AllocationOptions& options,
                       std::mt19937_64& rng) {
  Decision decision;
  decision.optimize = options.optimize;
  decision.temperature = options.temperature;
  decision.min_share = options.min_share;
  decision.max_share = options.max_share;
  decision.effective_max_share = options.max_share;
  if (!(options.temperature > 0) || !std::isfinite(options.temperature))
    throw std::invalid_argument("allocation: temperature must be positive and finite, got " +
                                std::to_string(options.temperature));

  std::int64_t window_total = 0;
  for (const auto& v : vendors) {
    if (!(v.gold_n >= 0) || !(v.gold_correct >= 0) || v.gold_correct > v.gold_n || !std::isfinite(v.gold_n))
      throw std::invalid_argument("allocation: vendor " + v.id + " has gold " + std::to_string(v.gold_correct) +
                                  " correct of " + std::to_string(v.gold_n));
    if (v.cost_micros < 0 || v.window_items < 0)
      throw std::invalid_argument("allocation: vendor " + v.id + " has a negative cost or window count");
    if (v.eligible && (!(v.weight > 0) || !std::isfinite(v.weight)))
      throw std::invalid_argument("allocation: eligible vendor " + v.id + " needs a positive weight");
    window_total += v.window_items;
  }

  decision.vendors.resize(vendors.size());
  std::vector<std::size_t> eligible;
  double min_cost_per_correct = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < vendors.size(); ++i) {
    const auto& v = vendors[i];
    auto& d = decision.vendors[i];
    d.id = v.id;
    d.eligible = v.eligible;
    d.removal_reason = v.removal_reason;
    if (window_total > 0)
      d.realised_share_before = static_cast<double>(v.window_items) / static_cast<double>(window_total);
    if (!v.eligible) continue;
    eligible.push_back(i);
    d.sampled_p = quality::sample_beta(options.prior.alpha + v.gold_correct,
                                       options.prior.beta + (v.gold_n - v.gold_correct), rng);
    d.cost_per_correct_micros = static_cast<double>(v.cost_micros) / std::max(d.sampled_p, kMinAccuracy);
    min_cost_per_correct = std::min(min_cost_per_correct, d.cost_per_correct_micros);
  }

  std::vector<double> scores;
  scores.reserve(eligible.size());
  for (std::size_t i : eligible) {
    auto& d = decision.vendors[i];
    // Free vendors (cost 0) are all cheapest; with one free vendor every paid one scores 0.
    const double cost_score =
        d.cost_per_correct_micros == 0 ? 1.0 : min_cost_per_correct / d.cost_per_correct_micros;
    switch (options.optimize) {
      case Optimize::quality:
        d.score = d.sampled_p;
        break;
      case Optimize::cost:
        d.score = cost_score;
        break;
      case Optimize::balanced:
        d.score = (d.sampled_p + cost_score) / 2;
        break;
    }
    scores.push_back(d.score);
  }

  auto weights = softmax(scores, options.temperature);
  double weighted_total = 0;
  for (std::size_t j = 0; j < eligible.size(); ++j) weighted_total += weights[j] *= vendors[eligible[j]].weight;
  const auto projected = project_to_box(weights, options.min_share, options.max_share);
  decision.effective_max_share = projected.effective_max_share;
  decision.cap_unsatisfiable = projected.cap_unsatisfiable;
  decision.min_share_relaxed = projected.min_share_relaxed;
  for (std::size_t j = 0; j < eligible.size(); ++j) {
    auto& d = decision.vendors[eligible[j]];
    d.target_share = projected.shares[j];
    d.capped = weighted_total > 0 && weights[j] / weighted_total > projected.effective_max_share + 1e-12;
  }
  return decision;
}

std::vector<std::vector<int>> DeficitAllocator::assign(std::size_t items, int redundancy,
                                                       const std::vector<double>& target_shares) {
  if (redundancy < 0) throw std::invalid_argument("allocation: redundancy must be >= 0, got " + std::to_string(redundancy));
  double total = 0;
  for (double s : target_shares) {
    check_share(s, "target share");
    total += s;
  }
  if (counters_.empty()) counters_.assign(target_shares.size(), 0.0);
  if (counters_.size() != target_shares.size())
    throw std::invalid_argument("allocation: " + std::to_string(target_shares.size()) + " shares for " +
                                std::to_string(counters_.size()) + " deficit counters");

  order_.clear();
  for (std::size_t i = 0; i < target_shares.size(); ++i) {
    if (target_shares[i] > 0) {
      order_.push_back(static_cast<int>(i));
    } else {
      counters_[i] = 0;
    }
  }
  std::vector<std::vector<int>> out(items);
  const std::size_t per_item = std::min(static_cast<std::size_t>(redundancy), order_.size());
  if (per_item == 0) return out;

  // Shares among the candidates, normalised, and capped at 1 / per_item (one judgment per item).
  std::vector<double> shares;
  shares.reserve(order_.size());
  for (int i : order_) shares.push_back(target_shares[static_cast<std::size_t>(i)] / total);
  const double cap = 1.0 / static_cast<double>(per_item);
  if (std::any_of(shares.begin(), shares.end(), [&](double s) { return s > cap; }))
    shares = project_to_box(shares, 0, cap).shares;
  std::vector<double> earn(shares.size());
  for (std::size_t j = 0; j < shares.size(); ++j) earn[j] = static_cast<double>(per_item) * shares[j];

  // Among vendors that can take a judgment without getting more than `bound` ahead of their share
  // (credit after paying >= -bound), pick the ones whose credit would first exceed `bound` if
  // skipped: earliest deadline (bound - credit) / earn, ties to the lower index. This is
  // Tijdeman's chairman-assignment rule, which keeps every |credit| <= bound < 1; plain
  // "most credit first" can drift slightly beyond 1.
  const double n = static_cast<double>(order_.size());
  const double bound = order_.size() > 1 ? 1 - 1 / (2 * n - 2) : 0.5;
  std::vector<char> taken(order_.size());
  for (auto& item : out) {
    item.reserve(per_item);
    for (std::size_t j = 0; j < order_.size(); ++j) counters_[static_cast<std::size_t>(order_[j])] += earn[j];
    std::fill(taken.begin(), taken.end(), 0);
    for (std::size_t pick = 0; pick < per_item; ++pick) {
      std::size_t best = order_.size();
      double best_deadline = 0;
      bool best_ready = false;
      for (std::size_t j = 0; j < order_.size(); ++j) {
        if (taken[j]) continue;
        const double credit = counters_[static_cast<std::size_t>(order_[j])];
        const bool ready = credit >= 1 - bound;
        const double deadline = (bound - credit) / earn[j];
        // Ready vendors first; among equals the earliest deadline; ties keep the lower index.
        if (best == order_.size() || (ready && !best_ready) || (ready == best_ready && deadline < best_deadline)) {
          best = j;
          best_deadline = deadline;
          best_ready = ready;
        }
      }
      taken[best] = 1;
      counters_[static_cast<std::size_t>(order_[best])] -= 1;
      item.push_back(order_[best]);
    }
  }
  return out;
}

Allocation allocate(const std::vector<VendorInput>& vendors, std::size_t items, int redundancy,
                    const AllocationOptions& options, std::mt19937_64& rng, DeficitAllocator& allocator) {
  Allocation result;
  result.decision = decide_shares(vendors, options, rng);
  std::vector<double> shares;
  shares.reserve(vendors.size());
  for (const auto& d : result.decision.vendors) shares.push_back(d.target_share);
  result.items = allocator.assign(items, redundancy, shares);
  for (const auto& item : result.items)
    for (int v : item) ++result.decision.vendors[static_cast<std::size_t>(v)].chosen_count;
  return result;
}

}  // namespace labelbroker::routing
