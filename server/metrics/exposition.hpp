#pragma once
// A writer for the Prometheus text exposition format (version 0.0.4): HELP and TYPE lines, then
// samples, appended to a caller's string. Pure and allocation-light, so a whole /metrics page
// renders in well under a millisecond.
//
// The writer escapes label values (\\, \", \n) and HELP text (\\, \n); names are the caller's and
// must already match [a-zA-Z_:][a-zA-Z0-9_:]* (they are literals in this codebase). Each family
// must be written in one piece: family() once, then all its samples. Not thread-safe: one writer
// per rendering.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace labelbroker::metrics {

using Label = std::pair<std::string_view, std::string_view>;
using Labels = std::initializer_list<Label>;

enum class Type { counter, gauge, histogram };

const char* to_string(Type type);

// Appends `value` escaped for a label value.
void append_label_value(std::string& out, std::string_view value);
// Appends a sample value: integers without a fraction, others in the shortest form that reads back
// exactly, and +Inf, -Inf, NaN as Prometheus spells them.
void append_value(std::string& out, double value);

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  // The HELP and TYPE lines that start a family.
  void family(std::string_view name, Type type, std::string_view help);

  void sample(std::string_view name, Labels labels, double value);
  void sample(std::string_view name, Labels labels, std::uint64_t value);
  // The same with labels from a vector (built at run time).
  void sample(std::string_view name, const std::vector<Label>& labels, double value);

  // One histogram series: `bounds` are the finite upper bounds, ascending; `counts` has one entry
  // per bound plus one for +Inf, each the count of that bucket alone (not cumulative: the writer
  // sums them). Writes name_bucket{...,le="..."} for every bound and +Inf, name_sum and
  // name_count (the total of `counts`).
  void histogram(std::string_view name, Labels labels, const std::vector<double>& bounds,
                 const std::vector<std::uint64_t>& counts, double sum);

 private:
  void labels(const Label* begin, const Label* end, const Label* extra = nullptr);

  std::string& out_;
};

}  // namespace labelbroker::metrics
