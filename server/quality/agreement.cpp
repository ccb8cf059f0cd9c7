#include "quality/agreement.hpp"

#include <stdexcept>
#include <string>

namespace labelbroker::quality {

namespace {

void check_label(std::size_t label, std::size_t classes) {
  if (label >= classes)
    throw std::invalid_argument("agreement: label index " + std::to_string(label) + " outside " +
                                std::to_string(classes) + " classes");
}

}  // namespace

AgreementTable::AgreementTable(std::size_t classes) : counts_(classes, std::vector<std::int64_t>(classes, 0)) {}

AgreementTable::AgreementTable(std::vector<std::vector<std::int64_t>> counts) : counts_(std::move(counts)) {
  for (const auto& row : counts_) {
    if (row.size() != counts_.size())
      throw std::invalid_argument("agreement: table must be K x K, got " + std::to_string(counts_.size()) +
                                  " rows and a row of " + std::to_string(row.size()));
    for (auto c : row)
      if (c < 0) throw std::invalid_argument("agreement: negative count " + std::to_string(c));
  }
}

AgreementTable AgreementTable::from_pairs(std::size_t classes,
                                          const std::vector<std::pair<std::size_t, std::size_t>>& pairs) {
  AgreementTable table(classes);
  for (const auto& [a, b] : pairs) table.add(a, b);
  return table;
}

void AgreementTable::add(std::size_t label_a, std::size_t label_b, std::int64_t count) {
  check_label(label_a, classes());
  check_label(label_b, classes());
  if (count < 0) throw std::invalid_argument("agreement: negative count " + std::to_string(count));
  counts_[label_a][label_b] += count;
}

void AgreementTable::merge(const AgreementTable& other) {
  if (other.classes() != classes())
    throw std::invalid_argument("agreement: cannot merge a " + std::to_string(other.classes()) +
                                "-class table into a " + std::to_string(classes()) + "-class one");
  for (std::size_t a = 0; a < classes(); ++a)
    for (std::size_t b = 0; b < classes(); ++b) counts_[a][b] += other.counts_[a][b];
}

std::int64_t AgreementTable::items() const {
  std::int64_t total = 0;
  for (const auto& row : counts_)
    for (auto c : row) total += c;
  return total;
}

PairAgreement pair_agreement(const AgreementTable& table) {
  const std::size_t k = table.classes();
  const auto& counts = table.counts();
  const std::int64_t items = table.items();
  PairAgreement out;
  out.items = items;
  if (items == 0) return out;
  std::vector<std::int64_t> rows(k, 0), cols(k, 0);
  std::int64_t agreed = 0;
  for (std::size_t a = 0; a < k; ++a) {
    agreed += counts[a][a];
    for (std::size_t b = 0; b < k; ++b) {
      rows[a] += counts[a][b];
      cols[b] += counts[a][b];
    }
  }
  const double n = static_cast<double>(items);
  out.agreement = static_cast<double>(agreed) / n;
  // pe == 1 exactly when both vendors put every item in the same class; decided on the integer
  // counts because the floating-point sum can land a rounding error away from 1.
  bool chance_is_certain = false;
  double pe = 0;
  for (std::size_t c = 0; c < k; ++c) {
    if (rows[c] == items && cols[c] == items) chance_is_certain = true;
    pe += (static_cast<double>(rows[c]) / n) * (static_cast<double>(cols[c]) / n);
  }
  if (!chance_is_certain) out.kappa = (out.agreement - pe) / (1 - pe);
  return out;
}

PairAgreement pair_agreement(const std::vector<std::vector<std::int64_t>>& counts) {
  return pair_agreement(AgreementTable(counts));
}

}  // namespace labelbroker::quality
