#pragma once
// Dawid-Skene: estimates each item's true class and each vendor's confusion matrix together by
// expectation-maximisation, so that a vendor's vote counts by how reliable it has been on this
// job -- a vendor that is often wrong in a consistent way (always one class for another) still
// carries information, which majority vote throws away.
//
// Guarantees: pure and deterministic (no I/O, no clock, no randomness; the same input gives
// bit-identical output on the same build, whatever order the judgments are listed in).
// Single-threaded; concurrent calls share nothing. Class order is the job's label order, and every
// argmax tie goes to the lowest class index. Indices outside [0, classes), [0, annotators),
// [0, items) or bad options throw std::invalid_argument.
//
// Model: item i has a true class t_i ~ Categorical(prior); annotator j answers l with probability
// pi[j][t_i][l], independently given t_i. Start: each item's posterior is its vote shares (a soft
// majority vote). M-step: prior and pi from the posteriors, each count plus `smoothing` (a
// symmetric Dirichlet pseudo-count, so no probability is ever 0). E-step: posteriors from prior
// and pi, in log space. Stops when the observed-data log-likelihood per judged item changes by
// less than `tolerance` between two iterations, or after `max_iterations`.
//
// Items without judgments take no part in the estimation and get the final class priors.
// An annotator without judgments gets a uniform confusion matrix (accuracy 1/K).
#include <cstddef>
#include <cstdint>
#include <vector>

namespace labelbroker::quality {

struct Judgment {
  std::int32_t item = 0;       // in [0, items)
  std::int32_t annotator = 0;  // vendor index, in [0, annotators)
  std::int32_t label = 0;      // class index in the job's label order, in [0, classes)
};

struct DawidSkeneOptions {
  int max_iterations = 50;  // EM rounds (one M-step and one E-step each); at least 1
  double tolerance = 1e-6;  // on |change of log-likelihood| / judged items; >= 0
  double smoothing = 0.01;  // Dirichlet pseudo-count per confusion-matrix cell and per class prior; > 0
};

struct DawidSkeneResult {
  std::size_t classes = 0;
  std::size_t annotators = 0;
  std::size_t items = 0;
  std::vector<double> posteriors;                 // items x classes, row-major; each row sums to 1
  std::vector<std::int32_t> labels;               // per item: argmax of its posterior (lowest index on ties)
  std::vector<double> confidence;                 // per item: the posterior probability of `labels[i]`
  std::vector<double> confusion;                  // annotators x classes x classes: [j][true k][answered l]
  std::vector<double> annotator_accuracy;         // per annotator: sum_k prior_k * pi[j][k][k]
  std::vector<std::int64_t> annotator_judgments;  // per annotator: judgments it gave
  std::vector<double> class_priors;               // per class; sums to 1
  int iterations = 0;                             // EM rounds run; 0 when there are no judgments
  bool converged = false;                         // the tolerance was met (true when there is nothing to fit)
  double log_likelihood = 0;                      // sum over judged items of log P(its judgments)

  double posterior(std::size_t item, std::size_t k) const { return posteriors[item * classes + k]; }
  double confusion_at(std::size_t annotator, std::size_t true_class, std::size_t answered) const {
    return confusion[(annotator * classes + true_class) * classes + answered];
  }
};

DawidSkeneResult dawid_skene(std::size_t classes, std::size_t annotators, std::size_t items,
                             const std::vector<Judgment>& judgments, const DawidSkeneOptions& options = {});

}  // namespace labelbroker::quality
