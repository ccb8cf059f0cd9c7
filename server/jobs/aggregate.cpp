#include "jobs/aggregate.hpp"

#include <algorithm>
#include <map>

namespace labelbroker::jobs {

std::optional<AggregatedLabel> majority_vote(const std::vector<std::string>& labels,
                                             const std::vector<std::string>& answers) {
  if (answers.empty()) return std::nullopt;
  std::map<std::string, std::size_t> votes;
  for (const auto& a : answers) ++votes[a];
  auto rank = [&](const std::string& label) {
    auto it = std::find(labels.begin(), labels.end(), label);
    return static_cast<std::size_t>(it - labels.begin());  // unlisted answers rank last
  };
  const std::string* best = nullptr;
  std::size_t best_votes = 0;
  for (const auto& [label, n] : votes) {
    // std::map iterates in byte order, which settles ties between unlisted answers.
    if (!best || n > best_votes || (n == best_votes && rank(label) < rank(*best))) {
      best = &label;
      best_votes = n;
    }
  }
  return AggregatedLabel{*best, static_cast<double>(best_votes) / static_cast<double>(answers.size()), "majority"};
}

}  // namespace labelbroker::jobs
