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

JobLabels dawid_skene_labels(const std::vector<std::string>& labels, const std::vector<ItemAnswer>& answers,
                             const quality::DawidSkeneOptions& options) {
  JobLabels out;
  if (answers.empty()) return out;
  std::vector<std::string> classes = labels;
  std::map<std::string, std::int32_t> class_index, vendor_index, item_index;
  for (std::size_t k = 0; k < classes.size(); ++k) class_index.emplace(classes[k], static_cast<std::int32_t>(k));
  std::vector<std::string> vendors, items;
  std::vector<std::int32_t> answers_per_item;
  std::vector<quality::Judgment> judgments;
  judgments.reserve(answers.size());
  auto index_of = [](std::map<std::string, std::int32_t>& index, std::vector<std::string>& names,
                     const std::string& name) {
    auto [it, fresh] = index.try_emplace(name, static_cast<std::int32_t>(names.size()));
    if (fresh) names.push_back(name);
    return it->second;
  };
  for (const auto& a : answers) {
    const auto item = index_of(item_index, items, a.item_id);
    if (static_cast<std::size_t>(item) >= answers_per_item.size()) answers_per_item.resize(item + 1, 0);
    ++answers_per_item[item];
    judgments.push_back({item, index_of(vendor_index, vendors, a.vendor_id), index_of(class_index, classes, a.answer)});
  }
  const auto result = quality::dawid_skene(classes.size(), vendors.size(), items.size(), judgments, options);
  out.iterations = result.iterations;
  out.converged = result.converged;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (answers_per_item[i] < 2) continue;
    out.items.push_back({items[i], {classes[result.labels[i]], result.confidence[i], "dawid_skene"}});
  }
  for (std::size_t j = 0; j < vendors.size(); ++j)
    out.vendors.push_back({vendors[j], result.annotator_accuracy[j], result.annotator_judgments[j]});
  return out;
}

}  // namespace labelbroker::jobs
