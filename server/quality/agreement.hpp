#pragma once
// How often two vendors give the same label on the items both judged, and Cohen's kappa: that
// agreement corrected for what two vendors with the same label frequencies would reach by chance.
//
// Guarantees: pure (no I/O, no clock, no randomness). AgreementTable is a plain value type: copies
// are independent, const use is safe from several threads, mutation needs one owner. Counts are
// exact integers, so tables summed from rollups give the same kappa as one table built from all
// the items. Malformed input (a non-square table, negative counts, a label index outside the
// classes, tables of different sizes) throws std::invalid_argument.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace labelbroker::quality {

struct PairAgreement {
  std::int64_t items = 0;       // items both vendors judged
  double agreement = 0;         // observed agreement po in [0, 1]; 0 when items == 0
  std::optional<double> kappa;  // (po - pe) / (1 - pe); nullopt when items == 0 or pe == 1
};

// Contingency table between vendor A's label (row) and vendor B's label (column) over K classes,
// in the job's label order. Rollups store one per vendor pair and period; merge adds them.
class AgreementTable {
 public:
  explicit AgreementTable(std::size_t classes);
  // Takes a K x K table of counts as stored.
  explicit AgreementTable(std::vector<std::vector<std::int64_t>> counts);
  // One item per pair (label index of A, label index of B).
  static AgreementTable from_pairs(std::size_t classes, const std::vector<std::pair<std::size_t, std::size_t>>& pairs);

  void add(std::size_t label_a, std::size_t label_b, std::int64_t count = 1);
  // Adds `other`'s counts; both must have the same number of classes.
  void merge(const AgreementTable& other);

  std::size_t classes() const { return counts_.size(); }
  std::int64_t items() const;
  const std::vector<std::vector<std::int64_t>>& counts() const { return counts_; }

 private:
  std::vector<std::vector<std::int64_t>> counts_;  // [label of A][label of B]
};

PairAgreement pair_agreement(const AgreementTable& table);
PairAgreement pair_agreement(const std::vector<std::vector<std::int64_t>>& counts);

}  // namespace labelbroker::quality
