#include "tools/eval/workload.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace labelbroker::eval {
namespace {

using nlohmann::json;
using vendors::sim::Scenario;

// Reads one JSON object, remembering consumed keys so that the rest can be rejected by finish().
class Reader {
 public:
  Reader(const json& object, std::string path, const std::string& source)
      : object_(object), path_(std::move(path)), source_(source) {
    if (!object_.is_object()) fail(path_, "expected an object");
  }

  const json* find(const std::string& key) {
    seen_.insert(key);
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }
  std::string at(const std::string& key) const { return path_ + "." + key; }
  const std::string& path() const { return path_; }
  const std::string& source() const { return source_; }

  bool string(const std::string& key, std::string& out) {
    const json* v = find(key);
    if (!v) return false;
    if (!v->is_string() || v->get<std::string>().empty()) fail(at(key), "expected a non-empty string");
    out = v->get<std::string>();
    return true;
  }

  template <typename Int>
  void integer(const std::string& key, Int& out, long long min, long long max) {
    if (const json* v = find(key)) {
      if (!v->is_number_integer()) fail(at(key), "expected an integer");
      const long long n = v->get<long long>();
      if (n < min || n > max || (v->is_number_unsigned() && v->get<unsigned long long>() > static_cast<unsigned long long>(max)))
        fail(at(key), "must be between " + std::to_string(min) + " and " + std::to_string(max));
      out = static_cast<Int>(n);
    }
  }

  bool number(const std::string& key, double& out, double min, double max) {
    const json* v = find(key);
    if (!v) return false;
    out = number_value(*v, at(key), min, max);
    return true;
  }

  double number_value(const json& v, const std::string& where, double min, double max) const {
    if (!v.is_number()) fail(where, "expected a number");
    const double d = v.get<double>();
    if (!std::isfinite(d) || d < min || d > max) {
      std::ostringstream range;
      range << "must be between " << min << " and " << max;
      fail(where, range.str());
    }
    return d;
  }

  void finish() const {
    for (auto it = object_.begin(); it != object_.end(); ++it)
      if (!seen_.count(it.key())) fail(at(it.key()), "unknown key");
  }

  [[noreturn]] void fail(const std::string& where, const std::string& reason) const {
    throw EvalError((source_.empty() ? "" : source_ + ": ") + where + ": " + reason);
  }

 private:
  const json& object_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> seen_;
};

template <typename T, typename Parse>
std::vector<T> read_enum_list(Reader& r, const std::string& key, Parse parse, const char* allowed) {
  std::vector<T> out;
  const json* v = r.find(key);
  if (!v) return out;
  if (!v->is_array()) r.fail(r.at(key), "expected an array");
  for (std::size_t i = 0; i < v->size(); ++i) {
    const std::string where = r.at(key) + "[" + std::to_string(i) + "]";
    if (!(*v)[i].is_string()) r.fail(where, std::string("expected one of ") + allowed);
    auto parsed = parse((*v)[i].template get<std::string>());
    if (!parsed) r.fail(where, std::string("expected one of ") + allowed);
    out.push_back(*parsed);
  }
  return out;
}

vendors::Capabilities read_capabilities(const json& v, const std::string& where, const std::string& source) {
  Reader r(v, where, source);
  vendors::Capabilities caps = all_capabilities();
  if (r.find("task_types"))
    caps.task_types = read_enum_list<vendors::TaskType>(r, "task_types", vendors::parse_task_type,
                                                        "classification, preference, rating");
  if (r.find("expertise"))
    caps.expertise = read_enum_list<vendors::Expertise>(r, "expertise", vendors::parse_expertise,
                                                        "general, skilled, expert");
  if (const json* d = r.find("domains")) {
    if (!d->is_array()) r.fail(r.at("domains"), "expected an array of domain names");
    caps.domains.clear();
    for (std::size_t i = 0; i < d->size(); ++i) {
      if (!(*d)[i].is_string() || (*d)[i].get<std::string>().empty())
        r.fail(r.at("domains") + "[" + std::to_string(i) + "]", "expected a non-empty string");
      caps.domains.push_back((*d)[i].get<std::string>());
    }
  }
  r.finish();
  return caps;
}

JobClass read_job(const json& v, const std::string& where, const std::string& source, double default_gold_rate) {
  Reader r(v, where, source);
  JobClass c;
  c.job.domain = "general";
  r.string("domain", c.job.domain);
  std::string text;
  if (r.string("task_type", text)) {
    auto t = vendors::parse_task_type(text);
    if (!t) r.fail(r.at("task_type"), "must be one of classification, preference, rating");
    c.job.task_type = *t;
  }
  if (r.string("expertise", text)) {
    auto e = vendors::parse_expertise(text);
    if (!e) r.fail(r.at("expertise"), "must be one of general, skilled, expert");
    c.job.expertise = *e;
  }
  if (r.string("optimize", text)) {
    auto o = routing::parse_optimize(text);
    if (!o) r.fail(r.at("optimize"), "must be one of quality, cost, balanced");
    c.job.optimize = *o;
  }
  r.integer("redundancy", c.job.redundancy, 1, kMaxRedundancy);
  double floor = 0;
  if (r.number("min_vendor_accuracy", floor, 0.0, 1.0)) c.job.min_vendor_accuracy = floor;
  c.share = 1;
  r.number("share", c.share, 0.0, 1e9);
  c.gold_rate = default_gold_rate;
  r.number("gold_rate", c.gold_rate, 0.0, 1.0);
  r.finish();
  c.name = c.job.domain + "/" + std::string(vendors::to_string(c.job.task_type)) + "/" +
           std::string(vendors::to_string(c.job.expertise));
  return c;
}

void read_routing(const json& v, const std::string& where, const std::string& source, routing::RoutingOptions& o) {
  Reader r(v, where, source);
  r.number("max_share", o.max_share, 0.01, 1.0);
  r.number("min_share", o.min_share, 0.0, 1.0);
  r.number("temperature", o.temperature, 1e-6, 1e6);
  r.number("evidence_discount", o.evidence_discount, 1e-6, 1.0);
  r.number("credible", o.credible, 0.01, 0.999);
  r.integer("share_cap_min_window", o.share_cap_min_window, 0, 1000000000LL);
  if (const json* p = r.find("prior")) {
    Reader pr(*p, r.at("prior"), source);
    pr.number("alpha", o.prior.alpha, 1e-6, 1e6);
    pr.number("beta", o.prior.beta, 1e-6, 1e6);
    pr.finish();
  }
  if (const json* d = r.find("domain_max_share")) {
    Reader dr(*d, r.at("domain_max_share"), source);
    for (auto it = d->begin(); it != d->end(); ++it) dr.number(it.key(), o.domain_max_share[it.key()], 0.01, 1.0);
  }
  if (o.min_share > o.max_share) r.fail(r.at("min_share"), "must not exceed max_share");
  r.finish();
}

const std::set<std::string>& metric_names() {
  static const std::set<std::string> names = {
      "min_accuracy",        "max_accuracy",      "max_accuracy_gap_to_oracle", "min_accuracy_gap_to_oracle",
      "max_cost_ratio_to_oracle", "max_cap_violations", "max_react_items",     "max_share",
      "max_lost"};
  return names;
}

const std::set<std::string>& policy_name_set() {
  static const std::set<std::string> names = {"labelbroker", "single-vendor", "round-robin", "cheapest-first",
                                              "oracle"};
  return names;
}

// The virtual clock starts at 0; absolute times have no place on it.
void check_virtual_clock(const Scenario& s) {
  for (std::size_t i = 0; i < s.vendors.size(); ++i) {
    const auto& b = s.vendors[i].behaviour;
    const std::string where = s.source + ": $.vendors[" + std::to_string(i) + "]";
    for (std::size_t k = 0; k < b.outages.size(); ++k)
      if (!b.outages[k].start_relative)
        throw EvalError(where + ".outages[" + std::to_string(k) +
                        "]: labelbroker-eval runs on a virtual clock; use start_s/end_s, not RFC 3339 times");
    for (std::size_t k = 0; k < b.drift.size(); ++k)
      if (b.drift[k].at)
        throw EvalError(where + ".drift[" + std::to_string(k) +
                        "]: labelbroker-eval runs on a virtual clock; use after_s or after_tasks, not at");
  }
}

}  // namespace

vendors::Capabilities all_capabilities() {
  vendors::Capabilities caps;
  caps.task_types = {vendors::TaskType::classification, vendors::TaskType::preference, vendors::TaskType::rating};
  caps.expertise = {vendors::Expertise::general, vendors::Expertise::skilled, vendors::Expertise::expert};
  return caps;
}

std::int64_t quote_micros(const vendors::sim::VendorSpec& vendor, vendors::TaskType task_type) {
  using vendors::sim::Kind;
  switch (vendor.kind) {
    case Kind::scale: {
      const char* type = task_type == vendors::TaskType::classification ? "categorization"
                         : task_type == vendors::TaskType::preference   ? "comparison"
                                                                        : "textcollection";
      auto it = vendor.prices_micros.find(type);
      return it == vendor.prices_micros.end() ? 0 : it->second;
    }
    case Kind::surge:
      return vendor.payment_per_response_micros;
    case Kind::mercor: {
      std::int64_t rate = 0;
      for (const auto& e : vendor.experts) rate = std::max(rate, e.hourly_rate_micros);
      const auto& m = vendor.minutes_per_item;
      const double minutes = m.lognormal ? m.p50_ms : m.fixed_ms;  // the *_ms fields hold minutes here
      return std::llround(static_cast<double>(rate) * std::max(1.0, std::round(minutes)) / 60.0);
    }
  }
  return 0;
}

Workload parse_workload(const Scenario& scenario) {
  check_virtual_clock(scenario);
  if (scenario.vendors.size() > 127)
    throw EvalError(scenario.source + ": $.vendors: labelbroker-eval simulates at most 127 vendors");
  Workload w;
  const std::string& source = scenario.source;
  std::set<std::string> vendor_ids;
  for (const auto& v : scenario.vendors) vendor_ids.insert(v.id);
  const json empty = json::object();
  Reader r(scenario.eval.is_null() ? empty : scenario.eval, "$.eval", source);
  r.integer("items", w.items, 1, 100000000LL);
  r.number("arrival_per_s", w.arrival_per_s, 1e-6, 1e9);
  r.integer("batch_items", w.batch_items, 1, 1000000);
  r.integer("labels", w.labels, 2, 64);
  r.number("window_s", w.window_s, 1, 10.0 * 365 * 86400);
  double gold_rate = 0.1;
  r.number("gold_rate", gold_rate, 0.0, 1.0);
  if (const json* jobs = r.find("jobs")) {
    if (!jobs->is_array() || jobs->empty()) r.fail(r.at("jobs"), "expected a non-empty array");
    for (std::size_t i = 0; i < jobs->size(); ++i)
      w.jobs.push_back(read_job((*jobs)[i], r.at("jobs") + "[" + std::to_string(i) + "]", source, gold_rate));
  } else {
    JobClass c;
    c.job.domain = "general";
    c.share = 1;
    c.gold_rate = gold_rate;
    c.name = "general/classification/general";
    w.jobs.push_back(c);
  }
  double total = 0;
  for (const auto& c : w.jobs) total += c.share;
  if (!(total > 0)) r.fail(r.at("jobs"), "the shares must not all be 0");
  for (std::size_t i = 0; i < w.jobs.size(); ++i) {
    w.jobs[i].share /= total;
    w.jobs[i].job.job_id = "eval-" + std::to_string(i);
  }
  if (const json* joins = r.find("joins")) {
    Reader jr(*joins, r.at("joins"), source);
    for (auto it = joins->begin(); it != joins->end(); ++it) {
      if (!vendor_ids.count(it.key())) jr.fail(jr.at(it.key()), "no such vendor in $.vendors");
      jr.number(it.key(), w.joins_s[it.key()], 0, 10.0 * 365 * 86400);
    }
  }
  if (const json* caps = r.find("capabilities")) {
    Reader cr(*caps, r.at("capabilities"), source);
    for (auto it = caps->begin(); it != caps->end(); ++it) {
      if (!vendor_ids.count(it.key())) cr.fail(cr.at(it.key()), "no such vendor in $.vendors");
      cr.find(it.key());
      w.capabilities[it.key()] = read_capabilities(it.value(), cr.at(it.key()), source);
    }
  }
  if (const json* routing = r.find("routing")) read_routing(*routing, r.at("routing"), source, w.routing);
  if (const json* expect = r.find("expect")) {
    Reader er(*expect, r.at("expect"), source);
    for (auto it = expect->begin(); it != expect->end(); ++it) {
      if (!policy_name_set().count(it.key()))
        er.fail(er.at(it.key()), "unknown policy (labelbroker, single-vendor, round-robin, cheapest-first, oracle)");
      er.find(it.key());
      Reader pr(it.value(), er.at(it.key()), source);
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!metric_names().count(m.key())) continue;  // finish() names it
        Expectation e{it.key(), m.key(), 0};
        pr.number(m.key(), e.bound, -1e12, 1e12);
        w.expect.push_back(e);
      }
      pr.finish();
    }
  }
  r.finish();
  return w;
}

}  // namespace labelbroker::eval
