#pragma once
// Turns an item's judgments into one label with a confidence. Pure.
//
// Majority vote: the label with most votes wins; ties go to the label listed first in the job's
// labels (a fixed, documented order, so the same judgments always give the same label, whatever
// order they arrived in). Confidence is the winner's share of the votes. The quality issue adds
// Dawid-Skene, which weighs vendors by their estimated accuracy.
#include <optional>
#include <string>
#include <vector>

namespace labelbroker::jobs {

struct AggregatedLabel {
  std::string label;
  double confidence = 0;  // in (0, 1]
  std::string method;     // "majority"
};

// nullopt when there are no judgments. Answers that are not among `labels` (free text) still
// count, and rank after every listed label on ties.
std::optional<AggregatedLabel> majority_vote(const std::vector<std::string>& labels,
                                             const std::vector<std::string>& answers);

}  // namespace labelbroker::jobs
