#include "vendors/sim/scenario.hpp"

#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "common/time.hpp"

namespace labelbroker::vendors::sim {
namespace {

using nlohmann::json;

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    default:
      return "value";
  }
}

// Reads one JSON object, remembering consumed keys so that the rest can be rejected by finish().
class Reader {
 public:
  Reader(const json& object, std::string path, const std::string& source)
      : object_(object), path_(std::move(path)), source_(source) {
    if (!object_.is_object()) fail(path_, std::string("expected an object, got ") + type_name(object_));
  }

  const json* find(const std::string& key) {
    seen_.insert(key);
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }
  bool has(const std::string& key) const { return object_.contains(key); }
  std::string at(const std::string& key) const { return path_ + "." + key; }
  const std::string& path() const { return path_; }

  void string(const std::string& key, std::string& out, bool required = false) {
    const json* v = find(key);
    if (!v) {
      if (required) fail(at(key), "is required");
      return;
    }
    if (!v->is_string()) fail(at(key), std::string("expected a string, got ") + type_name(*v));
    out = v->get<std::string>();
    if (required && out.empty()) fail(at(key), "must not be empty");
  }

  void boolean(const std::string& key, bool& out) {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) fail(at(key), std::string("expected a boolean, got ") + type_name(*v));
      out = v->get<bool>();
    }
  }

  template <typename Int>
  void integer(const std::string& key, Int& out, long long min, long long max) {
    if (const json* v = find(key)) out = static_cast<Int>(integer_value(*v, at(key), min, max));
  }

  long long integer_value(const json& v, const std::string& where, long long min, long long max) const {
    if (!v.is_number_integer()) fail(where, std::string("expected an integer, got ") + type_name(v));
    if (v.is_number_unsigned() && v.get<unsigned long long>() > static_cast<unsigned long long>(max))
      fail(where, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    long long n = v.get<long long>();
    if (n < min || n > max) fail(where, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return n;
  }

  void number(const std::string& key, double& out, double min, double max) {
    if (const json* v = find(key)) out = number_value(*v, at(key), min, max);
  }

  double number_value(const json& v, const std::string& where, double min, double max) const {
    if (!v.is_number()) fail(where, std::string("expected a number, got ") + type_name(v));
    double d = v.get<double>();
    if (!std::isfinite(d) || d < min || d > max) {
      std::ostringstream range;
      range << "must be between " << min << " and " << max;
      fail(where, range.str());
    }
    return d;
  }

  void probability(const std::string& key, double& out) { number(key, out, 0.0, 1.0); }

  void finish() const {
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      if (!seen_.count(it.key())) fail(at(it.key()), "unknown key");
    }
  }

  [[noreturn]] void fail(const std::string& where, const std::string& reason) const {
    throw ScenarioError((source_.empty() ? "" : source_ + ": ") + where + ": " + reason);
  }

  const std::string& source() const { return source_; }

 private:
  const json& object_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> seen_;
};

constexpr double kMaxMillis = 24.0 * 3600 * 1000;

// {"fixed<unit>": N} or {"p50<unit>": N, "p95<unit>": N}; unit is "_ms" or "_minutes".
Distribution read_distribution(const json& v, const std::string& where, const std::string& source,
                               const std::string& unit = "_ms") {
  Reader r(v, where, source);
  Distribution d;
  const std::string fixed = "fixed" + unit, p50 = "p50" + unit, p95 = "p95" + unit;
  if (r.has(fixed)) {
    r.number(fixed, d.fixed_ms, 0, kMaxMillis);
  } else if (r.has(p50) || r.has(p95)) {
    d.lognormal = true;
    if (!r.has(p50) || !r.has(p95)) r.fail(where, "a lognormal needs both " + p50 + " and " + p95);
    r.number(p50, d.p50_ms, 0.001, kMaxMillis);
    r.number(p95, d.p95_ms, 0.001, kMaxMillis);
    if (d.p95_ms < d.p50_ms) r.fail(r.at(p95), "must be at least " + p50);
  } else {
    r.fail(where, "expected {\"" + fixed + "\": N} or {\"" + p50 + "\": N, \"" + p95 + "\": N}");
  }
  r.finish();
  return d;
}

AccuracyTable read_accuracy(const json& v, const std::string& where, const std::string& source) {
  Reader r(v, where, source);
  AccuracyTable table;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string key = it.key();
    const double value = r.number_value(it.value(), r.at(key), 0.0, 1.0);
    r.find(key);
    if (key == "*") {
      table.default_accuracy = value;
      continue;
    }
    std::vector<std::string> parts;
    std::string_view rest = key;
    while (true) {
      auto slash = rest.find('/');
      parts.emplace_back(rest.substr(0, slash));
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
    if (parts.size() > 3) r.fail(r.at(key), "expected \"domain[/task_type[/expertise]]\"");
    for (auto& p : parts) {
      if (p.empty()) r.fail(r.at(key), "empty component (use \"*\" for any)");
      if (p == "*") p.clear();
    }
    parts.resize(3);
    table.rules.push_back({parts[0], parts[1], parts[2], value});
  }
  return table;
}

std::chrono::system_clock::time_point read_time(Reader& r, const std::string& key) {
  std::string text;
  r.string(key, text);
  auto t = common::parse_rfc3339(text);
  if (!t) r.fail(r.at(key), "expected an RFC 3339 time, got \"" + text + "\"");
  return *t;
}

std::vector<OutageWindow> read_outages(const json& v, const std::string& where, const std::string& source) {
  if (!v.is_array()) throw ScenarioError(source + ": " + where + ": expected an array, got " + type_name(v));
  std::vector<OutageWindow> out;
  for (size_t i = 0; i < v.size(); ++i) {
    Reader r(v[i], where + "[" + std::to_string(i) + "]", source);
    OutageWindow w;
    if (r.has("start_s") || r.has("end_s")) {
      long long start = 0, end = 0;
      if (!r.has("start_s") || !r.has("end_s")) r.fail(r.path(), "needs both start_s and end_s");
      r.integer("start_s", start, 0, 10LL * 365 * 86400);
      r.integer("end_s", end, 0, 10LL * 365 * 86400);
      if (end <= start) r.fail(r.at("end_s"), "must be after start_s");
      w.start_relative = std::chrono::seconds(start);
      w.end_relative = std::chrono::seconds(end);
    } else if (r.has("start") || r.has("end")) {
      if (!r.has("start") || !r.has("end")) r.fail(r.path(), "needs both start and end");
      w.start_absolute = read_time(r, "start");
      w.end_absolute = read_time(r, "end");
      if (*w.end_absolute <= *w.start_absolute) r.fail(r.at("end"), "must be after start");
    } else {
      r.fail(r.path(), "expected {\"start_s\", \"end_s\"} or {\"start\", \"end\"} (RFC 3339)");
    }
    r.finish();
    out.push_back(w);
  }
  return out;
}

std::vector<DriftRule> read_drift(const json& v, const std::string& where, const std::string& source) {
  if (!v.is_array()) throw ScenarioError(source + ": " + where + ": expected an array, got " + type_name(v));
  std::vector<DriftRule> out;
  for (size_t i = 0; i < v.size(); ++i) {
    Reader r(v[i], where + "[" + std::to_string(i) + "]", source);
    DriftRule d;
    int triggers = 0;
    if (r.has("after_tasks")) {
      std::uint64_t n = 0;
      r.integer("after_tasks", n, 0, std::numeric_limits<long long>::max());
      d.after_tasks = n;
      ++triggers;
    }
    if (r.has("after_s")) {
      long long s = 0;
      r.integer("after_s", s, 0, 10LL * 365 * 86400);
      d.after = std::chrono::seconds(s);
      ++triggers;
    }
    if (r.has("at")) {
      d.at = read_time(r, "at");
      ++triggers;
    }
    if (triggers != 1) r.fail(r.path(), "needs exactly one of after_tasks, after_s, at");
    if (!r.has("accuracy_delta")) r.fail(r.at("accuracy_delta"), "is required");
    r.number("accuracy_delta", d.accuracy_delta, -1.0, 1.0);
    if (r.has("domain")) r.string("domain", d.domain, true);
    if (r.has("task_type")) r.string("task_type", d.task_type, true);
    r.finish();
    out.push_back(d);
  }
  return out;
}

// Reads fault keys from `r` (the "faults" object, or a patch's top level).
void read_fault_keys(Reader& r, Faults& f) {
  r.probability("error_rate_5xx", f.error_rate_5xx);
  r.probability("lost_response_rate", f.lost_response_rate);
  r.probability("rate_429", f.rate_429);
  r.integer("retry_after_s", f.retry_after_s, 0, 86400);
  r.probability("hang_rate", f.hang_rate);
  r.integer("hang_ms", f.hang_ms, 0, 600000);
  r.probability("dropped_callback_rate", f.dropped_callback_rate);
}

// Behaviour keys shared by the scenario and live patches.
void read_behaviour_keys(Reader& r, Behaviour& b, bool patch) {
  const std::string& source = r.source();
  if (const json* v = r.find("accuracy")) b.accuracy = read_accuracy(*v, r.at("accuracy"), source);
  if (const json* v = r.find("latency")) b.latency = read_distribution(*v, r.at("latency"), source);
  if (const json* v = r.find("queue_delay")) b.queue_delay = read_distribution(*v, r.at("queue_delay"), source);
  if (const json* v = r.find("capacity")) {
    Reader c(*v, r.at("capacity"), source);
    c.integer("max_in_flight", b.max_in_flight, 1, 100000000);
    c.finish();
  }
  if (const json* v = r.find("faults")) {
    Reader f(*v, r.at("faults"), source);
    read_fault_keys(f, b.faults);
    f.finish();
  }
  if (const json* v = r.find("outages")) b.outages = read_outages(*v, r.at("outages"), source);
  if (const json* v = r.find("drift")) b.drift = read_drift(*v, r.at("drift"), source);
  r.boolean("outage", b.outage);
  r.boolean("paused", b.paused);
  if (patch) {
    read_fault_keys(r, b.faults);
    if (const json* v = r.find("fail_next")) {
      // Replaced as a whole: a leftover after_commit from an earlier patch would surprise.
      b.fail_next = FailNext{};
      Reader f(*v, r.at("fail_next"), source);
      f.integer("count", b.fail_next.count, 0, 1000000);
      f.integer("status", b.fail_next.status, 400, 599);
      f.boolean("after_commit", b.fail_next.after_commit);
      f.finish();
    }
  }
}

std::int64_t read_usd_micros(Reader& r, const std::string& key) {
  double usd = 0;
  r.number(key, usd, 0, 1e6);
  return std::llround(usd * 1e6);
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

VendorSpec read_vendor(const json& v, const std::string& where, const std::string& source, std::uint64_t seed) {
  Reader r(v, where, source);
  VendorSpec spec;
  r.string("id", spec.id, true);
  for (char c : spec.id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
      r.fail(r.at("id"), "may contain only letters, digits, '-' and '_' (it is a URL prefix)");
  }
  if (spec.id == "_sim" || spec.id == "healthz") r.fail(r.at("id"), "\"" + spec.id + "\" is reserved");
  std::string kind;
  r.string("kind", kind, true);
  if (kind == "scale")
    spec.kind = Kind::scale;
  else if (kind == "surge")
    spec.kind = Kind::surge;
  else if (kind == "mercor")
    spec.kind = Kind::mercor;
  else
    r.fail(r.at("kind"), "must be one of scale, surge, mercor");
  r.string("api_key", spec.api_key, true);
  r.string("callback_secret", spec.callback_secret, true);
  spec.seed = seed ^ fnv1a(spec.id);
  r.integer("seed", spec.seed, 0, std::numeric_limits<long long>::max());
  read_behaviour_keys(r, spec.behaviour, false);

  if (const json* p = r.find("prices_micros")) {
    if (spec.kind != Kind::scale) r.fail(r.at("prices_micros"), "only for kind scale");
    Reader pr(*p, r.at("prices_micros"), source);
    for (auto it = p->begin(); it != p->end(); ++it) {
      if (it.key() != "categorization" && it.key() != "comparison" && it.key() != "textcollection")
        pr.fail(pr.at(it.key()), "unknown task type (categorization, comparison, textcollection)");
      pr.integer(it.key(), spec.prices_micros[it.key()], 0, 1000000000000LL);
    }
  } else if (spec.kind == Kind::scale) {
    r.fail(r.at("prices_micros"), "is required for kind scale");
  }
  if (r.has("payment_per_response_micros") && spec.kind != Kind::surge)
    r.fail(r.at("payment_per_response_micros"), "only for kind surge");
  r.integer("payment_per_response_micros", spec.payment_per_response_micros, 0, 1000000000000LL);
  if (const json* m = r.find("minutes_per_item")) {
    if (spec.kind != Kind::mercor) r.fail(r.at("minutes_per_item"), "only for kind mercor");
    spec.minutes_per_item = read_distribution(*m, r.at("minutes_per_item"), source, "_minutes");
  }
  if (const json* e = r.find("experts")) {
    if (spec.kind != Kind::mercor) r.fail(r.at("experts"), "only for kind mercor");
    if (!e->is_array()) r.fail(r.at("experts"), std::string("expected an array, got ") + type_name(*e));
    std::set<std::string> ids;
    for (size_t i = 0; i < e->size(); ++i) {
      Reader er((*e)[i], r.at("experts") + "[" + std::to_string(i) + "]", source);
      Expert x;
      er.string("id", x.id, true);
      if (!ids.insert(x.id).second) er.fail(er.at("id"), "duplicate expert id \"" + x.id + "\"");
      if (const json* ds = er.find("domain_scores")) {
        Reader dr(*ds, er.at("domain_scores"), source);
        for (auto it = ds->begin(); it != ds->end(); ++it) dr.probability(it.key(), x.domain_scores[it.key()]);
      }
      if (!er.has("hourly_rate_usd")) er.fail(er.at("hourly_rate_usd"), "is required");
      x.hourly_rate_micros = read_usd_micros(er, "hourly_rate_usd");
      er.integer("available_hours", x.available_hours, 0, 168);
      er.finish();
      spec.experts.push_back(std::move(x));
    }
  } else if (spec.kind == Kind::mercor) {
    r.fail(r.at("experts"), "is required for kind mercor");
  }
  r.finish();
  return spec;
}

}  // namespace

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::scale:
      return "scale";
    case Kind::surge:
      return "surge";
    case Kind::mercor:
      return "mercor";
  }
  return "scale";
}

double AccuracyTable::lookup(std::string_view domain, std::string_view task_type, std::string_view expertise) const {
  double best = default_accuracy;
  int best_weight = -1;
  for (const auto& rule : rules) {
    if (!rule.domain.empty() && rule.domain != domain) continue;
    if (!rule.task_type.empty() && rule.task_type != task_type) continue;
    if (!rule.expertise.empty() && rule.expertise != expertise) continue;
    const int weight =
        (rule.domain.empty() ? 0 : 4) + (rule.task_type.empty() ? 0 : 2) + (rule.expertise.empty() ? 0 : 1);
    if (weight > best_weight) {
      best_weight = weight;
      best = rule.accuracy;
    }
  }
  return best;
}

Scenario parse_scenario(std::string_view text, const std::string& source) {
  json root;
  try {
    root = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    // nlohmann prefixes "[json.exception.parse_error.101] "; the rest is what an operator needs.
    if (auto close = what.find("] "); !what.empty() && what.front() == '[' && close != std::string::npos)
      what.erase(0, close + 2);
    throw ScenarioError(source + ": invalid JSON: " + what);
  }
  Scenario s;
  s.source = source;
  Reader top(root, "$", source);
  top.integer("seed", s.seed, 0, std::numeric_limits<long long>::max());
  top.string("listen", s.listen);
  if (!s.listen.empty()) {
    const auto colon = s.listen.rfind(':');
    const std::string port = colon == std::string::npos ? "" : s.listen.substr(colon + 1);
    if (colon == std::string::npos || colon == 0 || port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
      top.fail("$.listen", "expected \"host:port\" with a port from 0 to 65535, got \"" + s.listen + "\"");
  }
  top.integer("io_threads", s.io_threads, 1, 64);
  top.integer("worker_threads", s.worker_threads, 1, 1024);
  top.boolean("access_log", s.access_log);
  if (const json* cb = top.find("callbacks")) {
    Reader c(*cb, top.at("callbacks"), source);
    c.integer("threads", s.callbacks.threads, 1, 64);
    c.integer("max_attempts", s.callbacks.max_attempts, 1, 100);
    long long backoff = s.callbacks.backoff.count(), timeout = s.callbacks.timeout.count();
    c.integer("backoff_ms", backoff, 0, 3600000);
    c.integer("timeout_ms", timeout, 1, 600000);
    s.callbacks.backoff = std::chrono::milliseconds(backoff);
    s.callbacks.timeout = std::chrono::milliseconds(timeout);
    c.finish();
  }
  if (const json* eval = top.find("eval")) {
    if (!eval->is_object()) top.fail("$.eval", std::string("expected an object, got ") + type_name(*eval));
    s.eval = *eval;
  }
  const json* vendors = top.find("vendors");
  if (!vendors) top.fail("$.vendors", "is required");
  if (!vendors->is_array() || vendors->empty()) top.fail("$.vendors", "expected a non-empty array");
  std::set<std::string> ids;
  for (size_t i = 0; i < vendors->size(); ++i) {
    const std::string where = "$.vendors[" + std::to_string(i) + "]";
    VendorSpec spec = read_vendor((*vendors)[i], where, source, s.seed);
    if (!ids.insert(spec.id).second) top.fail(where + ".id", "duplicate vendor id \"" + spec.id + "\"");
    s.vendors.push_back(std::move(spec));
  }
  top.finish();
  return s;
}

Scenario load_scenario(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ScenarioError(path + ": cannot read scenario file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_scenario(text.str(), path);
}

void apply_behaviour_patch(Behaviour& behaviour, const nlohmann::json& patch) {
  static const std::string no_source;
  Behaviour next = behaviour;
  Reader r(patch, "$", no_source);
  read_behaviour_keys(r, next, true);
  r.finish();
  behaviour = std::move(next);
}

nlohmann::json behaviour_to_json(const Behaviour& b) {
  auto dist = [](const Distribution& d) {
    return d.lognormal ? json{{"p50_ms", d.p50_ms}, {"p95_ms", d.p95_ms}} : json{{"fixed_ms", d.fixed_ms}};
  };
  json accuracy = {{"*", b.accuracy.default_accuracy}};
  for (const auto& rule : b.accuracy.rules) {
    auto part = [](const std::string& s) { return s.empty() ? std::string("*") : s; };
    accuracy[part(rule.domain) + "/" + part(rule.task_type) + "/" + part(rule.expertise)] = rule.accuracy;
  }
  const auto& f = b.faults;
  return {{"accuracy", accuracy},
          {"latency", dist(b.latency)},
          {"queue_delay", dist(b.queue_delay)},
          {"capacity", {{"max_in_flight", b.max_in_flight}}},
          {"faults",
           {{"error_rate_5xx", f.error_rate_5xx},
            {"lost_response_rate", f.lost_response_rate},
            {"rate_429", f.rate_429},
            {"retry_after_s", f.retry_after_s},
            {"hang_rate", f.hang_rate},
            {"hang_ms", f.hang_ms},
            {"dropped_callback_rate", f.dropped_callback_rate}}},
          {"outage", b.outage},
          {"outage_windows", b.outages.size()},
          {"drift_rules", b.drift.size()},
          {"paused", b.paused},
          {"fail_next",
           {{"count", b.fail_next.count}, {"status", b.fail_next.status}, {"after_commit", b.fail_next.after_commit}}}};
}

}  // namespace labelbroker::vendors::sim
