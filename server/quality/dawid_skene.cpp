#include "quality/dawid_skene.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>

namespace labelbroker::quality {

namespace {

void validate(std::size_t classes, std::size_t annotators, std::size_t items, const std::vector<Judgment>& judgments,
              const DawidSkeneOptions& options) {
  if (classes == 0) throw std::invalid_argument("dawid_skene: need at least one class");
  if (options.max_iterations < 1)
    throw std::invalid_argument("dawid_skene: max_iterations must be >= 1, got " +
                                std::to_string(options.max_iterations));
  if (!(options.tolerance >= 0) || !std::isfinite(options.tolerance))
    throw std::invalid_argument("dawid_skene: tolerance must be finite and >= 0");
  if (!(options.smoothing > 0) || !std::isfinite(options.smoothing))
    throw std::invalid_argument("dawid_skene: smoothing must be finite and > 0");
  for (const auto& j : judgments) {
    if (j.item < 0 || static_cast<std::size_t>(j.item) >= items || j.annotator < 0 ||
        static_cast<std::size_t>(j.annotator) >= annotators || j.label < 0 ||
        static_cast<std::size_t>(j.label) >= classes)
      throw std::invalid_argument("dawid_skene: judgment (item " + std::to_string(j.item) + ", annotator " +
                                  std::to_string(j.annotator) + ", label " + std::to_string(j.label) + ") outside " +
                                  std::to_string(items) + " items, " + std::to_string(annotators) + " annotators, " +
                                  std::to_string(classes) + " classes");
  }
}

// Judgments grouped by item (compressed sparse rows), each item's entries ordered by (annotator,
// label): the E-step then walks memory in order, and every floating-point sum runs in an order
// that does not depend on how the caller listed the judgments. Each entry is the offset of its
// (annotator, answered label) row in the [j][l][k] parameter layout.
struct ItemJudgments {
  std::vector<std::size_t> begin;  // items + 1 offsets into cell
  std::vector<std::size_t> cell;   // (annotator * K + label) * K, K = classes
};

ItemJudgments group_by_item(std::size_t classes, std::size_t annotators, std::size_t items,
                            const std::vector<Judgment>& judgments) {
  // Two stable counting sorts: by (annotator, label), then by item.
  const std::size_t keys = annotators * classes;
  std::vector<std::size_t> start(keys + 1, 0);
  for (const auto& j : judgments) ++start[static_cast<std::size_t>(j.annotator) * classes + j.label + 1];
  for (std::size_t k = 0; k < keys; ++k) start[k + 1] += start[k];
  std::vector<std::size_t> by_key(judgments.size());
  for (std::size_t n = 0; n < judgments.size(); ++n)
    by_key[start[static_cast<std::size_t>(judgments[n].annotator) * classes + judgments[n].label]++] = n;

  ItemJudgments out;
  out.begin.assign(items + 1, 0);
  for (const auto& j : judgments) ++out.begin[static_cast<std::size_t>(j.item) + 1];
  for (std::size_t i = 0; i < items; ++i) out.begin[i + 1] += out.begin[i];
  std::vector<std::size_t> next(out.begin.begin(), out.begin.end() - 1);
  out.cell.resize(judgments.size());
  for (auto n : by_key) {
    const auto& j = judgments[n];
    out.cell[next[static_cast<std::size_t>(j.item)]++] =
        (static_cast<std::size_t>(j.annotator) * classes + static_cast<std::size_t>(j.label)) * classes;
  }
  return out;
}

// Lowest index among the largest values.
std::size_t argmax(const double* values, std::size_t n) {
  std::size_t best = 0;
  for (std::size_t k = 1; k < n; ++k)
    if (values[k] > values[best]) best = k;
  return best;
}

}  // namespace

DawidSkeneResult dawid_skene(std::size_t classes, std::size_t annotators, std::size_t items,
                             const std::vector<Judgment>& judgments, const DawidSkeneOptions& options) {
  validate(classes, annotators, items, judgments, options);
  const ItemJudgments grouped = group_by_item(classes, annotators, items, judgments);

  DawidSkeneResult r;
  r.classes = classes;
  r.annotators = annotators;
  r.items = items;
  r.posteriors.assign(items * classes, 0.0);
  r.class_priors.assign(classes, 1.0 / static_cast<double>(classes));
  r.annotator_judgments.assign(annotators, 0);
  for (const auto& j : judgments) ++r.annotator_judgments[static_cast<std::size_t>(j.annotator)];

  // Parameters in [j][answered l][true k] layout, so one judgment reads or writes K adjacent values.
  const std::size_t cells = annotators * classes * classes;
  std::vector<double> pi(cells, 1.0 / static_cast<double>(classes));
  std::vector<double> log_pi(cells);
  std::vector<double> counts(cells);
  std::vector<double> prior_counts(classes);
  std::vector<double> log_prior(classes);

  // Soft majority vote.
  std::size_t judged = 0;
  for (std::size_t i = 0; i < items; ++i) {
    const std::size_t b = grouped.begin[i], e = grouped.begin[i + 1];
    if (b == e) continue;
    ++judged;
    double* t = &r.posteriors[i * classes];
    for (std::size_t n = b; n < e; ++n) t[(grouped.cell[n] / classes) % classes] += 1.0;
    const double share = 1.0 / static_cast<double>(e - b);
    for (std::size_t k = 0; k < classes; ++k) t[k] *= share;
  }

  if (judged > 0) {
    double previous = -std::numeric_limits<double>::infinity();
    for (int iteration = 1; iteration <= options.max_iterations; ++iteration) {
      // M-step: expected counts under the current posteriors, plus the pseudo-count.
      std::fill(counts.begin(), counts.end(), options.smoothing);
      std::fill(prior_counts.begin(), prior_counts.end(), options.smoothing);
      for (std::size_t i = 0; i < items; ++i) {
        const std::size_t b = grouped.begin[i], e = grouped.begin[i + 1];
        if (b == e) continue;
        const double* t = &r.posteriors[i * classes];
        for (std::size_t k = 0; k < classes; ++k) prior_counts[k] += t[k];
        for (std::size_t n = b; n < e; ++n) {
          double* row = &counts[grouped.cell[n]];
          for (std::size_t k = 0; k < classes; ++k) row[k] += t[k];
        }
      }
      double prior_total = 0;
      for (double c : prior_counts) prior_total += c;
      for (std::size_t k = 0; k < classes; ++k) {
        r.class_priors[k] = prior_counts[k] / prior_total;
        log_prior[k] = std::log(r.class_priors[k]);
      }
      for (std::size_t j = 0; j < annotators; ++j) {
        const std::size_t base = j * classes * classes;
        for (std::size_t k = 0; k < classes; ++k) {
          double total = 0;
          for (std::size_t l = 0; l < classes; ++l) total += counts[base + l * classes + k];
          for (std::size_t l = 0; l < classes; ++l) {
            const std::size_t at = base + l * classes + k;
            pi[at] = counts[at] / total;
            log_pi[at] = std::log(pi[at]);
          }
        }
      }

      // E-step: log prior + sum of log pi over the item's judgments, normalised with the largest
      // term factored out so that items with many judgments cannot underflow.
      double log_likelihood = 0;
      for (std::size_t i = 0; i < items; ++i) {
        const std::size_t b = grouped.begin[i], e = grouped.begin[i + 1];
        if (b == e) continue;
        double* t = &r.posteriors[i * classes];
        for (std::size_t k = 0; k < classes; ++k) t[k] = log_prior[k];
        for (std::size_t n = b; n < e; ++n) {
          const double* row = &log_pi[grouped.cell[n]];
          for (std::size_t k = 0; k < classes; ++k) t[k] += row[k];
        }
        double top = t[0];
        for (std::size_t k = 1; k < classes; ++k) top = std::max(top, t[k]);
        double sum = 0;
        for (std::size_t k = 0; k < classes; ++k) {
          t[k] = std::exp(t[k] - top);
          sum += t[k];
        }
        const double inverse = 1.0 / sum;
        for (std::size_t k = 0; k < classes; ++k) t[k] *= inverse;
        log_likelihood += top + std::log(sum);
      }

      r.iterations = iteration;
      r.log_likelihood = log_likelihood;
      // The first round has nothing to compare with: the start was a vote, not a fitted model.
      if (iteration > 1 && std::fabs(log_likelihood - previous) / static_cast<double>(judged) < options.tolerance) {
        r.converged = true;
        break;
      }
      previous = log_likelihood;
    }
  } else {
    r.converged = true;  // nothing to fit: uniform priors and confusion matrices
  }

  for (std::size_t i = 0; i < items; ++i) {
    if (grouped.begin[i] != grouped.begin[i + 1]) continue;
    std::copy(r.class_priors.begin(), r.class_priors.end(),
              r.posteriors.begin() + static_cast<std::ptrdiff_t>(i * classes));
  }
  r.labels.resize(items);
  r.confidence.resize(items);
  for (std::size_t i = 0; i < items; ++i) {
    const double* t = &r.posteriors[i * classes];
    const std::size_t best = argmax(t, classes);
    r.labels[i] = static_cast<std::int32_t>(best);
    r.confidence[i] = t[best];
  }

  // Public layout is [j][true k][answered l], the way confusion matrices are usually read.
  r.confusion.resize(cells);
  r.annotator_accuracy.assign(annotators, 0.0);
  for (std::size_t j = 0; j < annotators; ++j)
    for (std::size_t k = 0; k < classes; ++k) {
      for (std::size_t l = 0; l < classes; ++l)
        r.confusion[(j * classes + k) * classes + l] = pi[(j * classes + l) * classes + k];
      r.annotator_accuracy[j] += r.class_priors[k] * pi[(j * classes + k) * classes + k];
    }
  return r;
}

}  // namespace labelbroker::quality
