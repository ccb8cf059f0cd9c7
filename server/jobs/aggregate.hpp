#pragma once
// Turns an item's judgments into one label with a confidence. Pure.
//
// Majority vote: the label with most votes wins; ties go to the label listed first in the job's
// labels (a fixed, documented order, so the same judgments always give the same label, whatever
// order they arrived in). Confidence is the winner's share of the votes. The quality issue adds
// Dawid-Skene, which weighs vendors by their estimated accuracy.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "quality/dawid_skene.hpp"

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

// One answer of one vendor to one item of a job.
struct ItemAnswer {
  std::string item_id;
  std::string vendor_id;
  std::string answer;
};

struct JobLabels {
  struct Item {
    std::string item_id;
    AggregatedLabel label;  // method "dawid_skene"
  };
  struct Vendor {
    std::string vendor_id;
    double accuracy = 0;  // Dawid-Skene's estimate on this job
    std::int64_t judgments = 0;
  };
  std::vector<Item> items;  // items with two or more answers; the others keep their majority label
  std::vector<Vendor> vendors;
  int iterations = 0;
  bool converged = false;
};

// Dawid-Skene over every answer of a job: classes are the job's labels in order (answers outside
// them become extra classes after them), so ties go to the first listed label, as with majority
// vote. Items answered once are left out of `items`: one answer carries no evidence beyond itself.
JobLabels dawid_skene_labels(const std::vector<std::string>& labels, const std::vector<ItemAnswer>& answers,
                             const quality::DawidSkeneOptions& options);

}  // namespace labelbroker::jobs
