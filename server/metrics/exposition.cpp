#include "metrics/exposition.hpp"

#include <charconv>
#include <cmath>

namespace labelbroker::metrics {

const char* to_string(Type type) {
  switch (type) {
    case Type::counter:
      return "counter";
    case Type::gauge:
      return "gauge";
    case Type::histogram:
      return "histogram";
  }
  return "untyped";
}

void append_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void append_value(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buffer[32];
  std::to_chars_result r;
  // Whole numbers (counts, bytes) below 2^53 print as integers: shorter, and what people expect.
  if (value == std::trunc(value) && std::fabs(value) < 9007199254740992.0)
    r = std::to_chars(buffer, buffer + sizeof buffer, static_cast<long long>(value));
  else if (std::fabs(value) >= 1e-5 && std::fabs(value) < 1e15)
    // Plain decimals where they stay short ("0.0005", not the shorter "5e-04" to_chars prefers):
    // what people and other exporters write, notably in bucket bounds.
    r = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed);
  else
    r = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, r.ptr);
}

namespace {

void append_uint(std::string& out, std::uint64_t value) {
  char buffer[24];
  auto r = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, r.ptr);
}

}  // namespace

void Writer::family(std::string_view name, Type type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  for (char c : help) {
    if (c == '\\')
      out_ += "\\\\";
    else if (c == '\n')
      out_ += "\\n";
    else
      out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += to_string(type);
  out_ += '\n';
}

void Writer::labels(const Label* begin, const Label* end, const Label* extra) {
  if (begin == end && !extra) return;
  out_ += '{';
  bool first = true;
  auto one = [&](const Label& l) {
    if (!first) out_ += ',';
    first = false;
    out_ += l.first;
    out_ += "=\"";
    append_label_value(out_, l.second);
    out_ += '"';
  };
  for (auto it = begin; it != end; ++it) one(*it);
  if (extra) one(*extra);
  out_ += '}';
}

void Writer::sample(std::string_view name, Labels labels_, double value) {
  out_ += name;
  labels(labels_.begin(), labels_.end());
  out_ += ' ';
  append_value(out_, value);
  out_ += '\n';
}

void Writer::sample(std::string_view name, Labels labels_, std::uint64_t value) {
  out_ += name;
  labels(labels_.begin(), labels_.end());
  out_ += ' ';
  append_uint(out_, value);
  out_ += '\n';
}

void Writer::sample(std::string_view name, const std::vector<Label>& labels_, double value) {
  out_ += name;
  labels(labels_.data(), labels_.data() + labels_.size());
  out_ += ' ';
  append_value(out_, value);
  out_ += '\n';
}

void Writer::histogram(std::string_view name, Labels labels_, const std::vector<double>& bounds,
                       const std::vector<std::uint64_t>& counts, double sum) {
  std::uint64_t cumulative = 0;
  std::string le;
  for (std::size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += i < counts.size() ? counts[i] : 0;
    le.clear();
    if (i < bounds.size())
      append_value(le, bounds[i]);
    else
      le = "+Inf";
    const Label bucket{"le", le};
    out_ += name;
    out_ += "_bucket";
    labels(labels_.begin(), labels_.end(), &bucket);
    out_ += ' ';
    append_uint(out_, cumulative);
    out_ += '\n';
  }
  out_ += name;
  out_ += "_sum";
  labels(labels_.begin(), labels_.end());
  out_ += ' ';
  append_value(out_, sum);
  out_ += '\n';
  out_ += name;
  out_ += "_count";
  labels(labels_.begin(), labels_.end());
  out_ += ' ';
  append_uint(out_, cumulative);
  out_ += '\n';
}

}  // namespace labelbroker::metrics
