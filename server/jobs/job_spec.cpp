#include "jobs/job_spec.hpp"

#include <algorithm>
#include <set>
#include <string_view>
#include <unordered_set>

#include "common/money.hpp"
#include "common/strings.hpp"
#include "common/time.hpp"

namespace labelbroker::jobs {
namespace {

using nlohmann::json;

const std::set<std::string> kKnownKeys = {
    "name",       "task_type", "domain",     "expertise", "instructions", "labels",   "items",        "gold",
    "redundancy", "quality",   "budget_usd", "deadline",  "vendors",      "optimize", "callback_url", "gold_set"};
const std::set<std::string> kGoldSetKeys = {"name", "task_type", "labels", "items"};

// Built once: these are checked for every item, and a job may have a million.
const std::set<std::string> kItemKeys = {"id", "data"};
const std::set<std::string> kGoldKeys = {"id", "data", "answer"};

std::string pointer(std::string_view parent, std::string_view token) {
  return std::string(parent) + "/" + http::json_pointer_escape(token);
}

std::string pointer(std::string_view parent, std::size_t index) {
  return std::string(parent) + "/" + std::to_string(index);
}

class Validator {
 public:
  Validator(const json& body, const ValidationLimits& limits) : body_(body), limits_(limits) {}

  void error(std::string where, std::string message) { errors_.push_back({std::move(where), std::move(message)}); }
  std::vector<http::FieldError> take_errors() { return std::move(errors_); }
  bool ok() const { return errors_.empty(); }

  // A string member; `required` reports it when absent.
  std::optional<std::string> string(const std::string& key, bool required, std::size_t max_length = 10000) {
    auto it = body_.find(key);
    if (it == body_.end() || it->is_null()) {
      if (required) error("/" + key, "is required");
      return std::nullopt;
    }
    if (!it->is_string()) {
      error("/" + key, "must be a string");
      return std::nullopt;
    }
    auto value = it->get<std::string>();
    if (required && value.empty()) error("/" + key, "must not be empty");
    if (value.size() > max_length) error("/" + key, "must be at most " + std::to_string(max_length) + " characters");
    return value;
  }

  std::string id(const json& entry, const std::string& where) {
    auto it = entry.find("id");
    if (it == entry.end() || !it->is_string() || it->get<std::string>().empty()) {
      error(where + "/id", "is required: a non-empty string");
      return "";
    }
    auto value = it->get<std::string>();
    if (value.size() > limits_.max_id_length)
      error(where + "/id", "must be at most " + std::to_string(limits_.max_id_length) + " characters");
    return value;
  }

  // `take`: move the data out of `entry` (the caller owns the document) instead of copying.
  json data(const json& entry, const std::string& where, bool take) {
    auto it = entry.find("data");
    if (it == entry.end() || !it->is_object()) {
      error(where + "/data", "is required: an object");
      return json::object();
    }
    if (take) return std::move(const_cast<json&>(*it));
    return *it;
  }

  void unknown_keys(const json& object, const std::string& where, const std::set<std::string>& known) {
    for (auto it = object.begin(); it != object.end(); ++it)
      if (!known.count(it.key())) error(pointer(where, it.key()), "is not a known field");
  }

 private:
  const json& body_;
  const ValidationLimits& limits_;
  std::vector<http::FieldError> errors_;
};

std::vector<std::string> vendor_names(Validator& v, const json& list, const std::string& where,
                                      const std::vector<VendorView>& vendors) {
  std::vector<std::string> out;
  if (!list.is_array()) {
    v.error(where, "must be an array of vendor ids");
    return out;
  }
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_string()) {
      v.error(pointer(where, i), "must be a vendor id (string)");
      continue;
    }
    auto name = list[i].get<std::string>();
    const bool known = std::any_of(vendors.begin(), vendors.end(), [&](const VendorView& x) { return x.id == name; });
    if (!known) v.error(pointer(where, i), "no vendor '" + name + "' is configured");
    out.push_back(std::move(name));
  }
  return out;
}

// Item ids seen so far in one request, as views into the document's own id strings (which stay
// put while we read): no copy per id.
class IdSet {
 public:
  void reserve(std::size_t n) { ids_.reserve(n); }
  // False if the entry's id was seen before. Entries without a usable id are not remembered: the
  // id itself is reported as missing.
  bool remember(const json& entry) {
    auto it = entry.find("id");
    if (it == entry.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return true;
    return ids_.insert(it->get_ref<const std::string&>()).second;
  }

 private:
  std::unordered_set<std::string_view> ids_;
};

std::optional<vendors::TaskType> task_type_field(Validator& v) {
  auto t = v.string("task_type", true);
  if (!t) return std::nullopt;
  auto parsed = vendors::parse_task_type(*t);
  if (!parsed && !t->empty()) v.error("/task_type", "must be one of classification, preference, rating");
  return parsed;
}

// Labels: at least two distinct, non-empty strings (exactly two for a preference task).
std::vector<std::string> labels_field(Validator& v, const json& body, std::optional<vendors::TaskType> task_type,
                                      const ValidationLimits& limits) {
  std::vector<std::string> labels;
  auto it = body.find("labels");
  if (it == body.end() || !it->is_array()) {
    v.error("/labels", "is required: an array of at least two distinct strings");
    return labels;
  }
  std::set<std::string> seen;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const auto& label = (*it)[i];
    if (!label.is_string() || label.get<std::string>().empty()) {
      v.error(pointer("/labels", i), "must be a non-empty string");
      continue;
    }
    if (!seen.insert(label.get<std::string>()).second) v.error(pointer("/labels", i), "duplicates an earlier label");
    labels.push_back(label.get<std::string>());
  }
  if (it->size() < 2) v.error("/labels", "needs at least two labels");
  if (it->size() > limits.max_labels)
    v.error("/labels", "may have at most " + std::to_string(limits.max_labels) + " labels");
  if (task_type == vendors::TaskType::preference && it->size() != 2)
    v.error("/labels", "a preference task compares exactly two options");
  return labels;
}

// Gold entries {id, data, answer} of the array `list` at `where`: ids unique (with `ids`), data
// objects, answers among `labels` (not checked when `labels` is empty: the labels themselves are
// then reported as missing).
void gold_entries(Validator& v, const json& list, const std::string& where, const std::vector<std::string>& labels,
                  bool take_data, IdSet& ids, std::string_view duplicate_message, std::vector<GoldItem>& out) {
  out.reserve(list.size());
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto at = pointer(where, i);
    const auto& entry = list[i];
    if (!entry.is_object()) {
      v.error(at, "must be an object {id, data, answer}");
      continue;
    }
    v.unknown_keys(entry, at, kGoldKeys);
    GoldItem gold{v.id(entry, at), v.data(entry, at, take_data), ""};
    if (!ids.remember(entry)) v.error(at + "/id", std::string(duplicate_message));
    auto answer = entry.find("answer");
    if (answer == entry.end() || !answer->is_string()) {
      v.error(at + "/answer", "is required: one of the labels");
    } else {
      gold.answer = answer->get<std::string>();
      if (!labels.empty() && std::find(labels.begin(), labels.end(), gold.answer) == labels.end())
        v.error(at + "/answer", "'" + gold.answer + "' is not one of the labels");
    }
    out.push_back(std::move(gold));
  }
}

// Items (and gold): unique ids across both lists, data objects, gold answers among `labels`.
void parse_item_lists(Validator& v, const json& body, const std::vector<std::string>& labels,
                      const ValidationLimits& limits, bool take_data, std::vector<JobItem>& items,
                      std::vector<GoldItem>& gold_items) {
  IdSet ids;
  if (auto it = body.find("items");
      limits.allow_no_items && (it == body.end() || it->is_null() || (it->is_array() && it->empty()))) {
    // a draft: items come later
  } else if (it == body.end() || !it->is_array() || it->empty()) {
    v.error("/items", "is required: a non-empty array of {id, data}");
  } else if (it->size() > limits.max_items) {
    v.error("/items", "may have at most " + std::to_string(limits.max_items) +
                          " items per request; append more with POST /v1/jobs/{id}/items");
  } else {
    items.reserve(it->size());
    ids.reserve(it->size());
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto where = pointer("/items", i);
      const auto& entry = (*it)[i];
      if (!entry.is_object()) {
        v.error(where, "must be an object {id, data}");
        continue;
      }
      v.unknown_keys(entry, where, kItemKeys);
      JobItem item{v.id(entry, where), v.data(entry, where, take_data)};
      if (!ids.remember(entry)) v.error(where + "/id", "duplicates an earlier item id");
      items.push_back(std::move(item));
    }
  }
  if (auto it = body.find("gold"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) {
      v.error("/gold", "must be an array of {id, data, answer}");
    } else if (it->size() > limits.max_items) {
      v.error("/gold", "may have at most " + std::to_string(limits.max_items) + " items per request");
    } else {
      gold_entries(v, *it, "/gold", labels, take_data, ids, "duplicates an item or gold id", gold_items);
    }
  }
}

// The job's "gold_set": one of the team's sets (any other id, another team's included, does not
// exist, and the messages never differ), of the job's task type, whose labels the job also has
// (so every answer in it is a label of the job). `task_type` is nullopt when the job's own is
// invalid (reported already).
void gold_set_field(Validator& v, const json& body, JobSpec& job, std::optional<vendors::TaskType> task_type,
                    const GoldSetLookup& find_gold_set) {
  auto id = v.string("gold_set", false, 100);
  if (!id) return;
  if (!common::is_uuid(*id)) {
    v.error("/gold_set", "must be the id of one of the team's gold sets (a UUID)");
    return;
  }
  if (find_gold_set) job.gold_set = find_gold_set(*id);
  if (!job.gold_set) {
    v.error("/gold_set", "no gold set with this id exists");
    return;
  }
  const auto& set = *job.gold_set;
  if (task_type && set.task_type != vendors::to_string(*task_type))
    v.error("/gold_set", "the gold set is for " + set.task_type + " tasks, the job is " +
                             std::string(vendors::to_string(*task_type)));
  if (!job.labels.empty()) {
    for (const auto& label : set.labels)
      if (std::find(job.labels.begin(), job.labels.end(), label) == job.labels.end())
        v.error("/gold_set", "the gold set's label '" + label + "' is not one of the job's labels");
  }
  // The set's items come in as "set:<id>": the job's own ids must not look like that.
  for (const char* list : {"items", "gold"}) {
    auto it = body.find(list);
    if (it == body.end() || !it->is_array()) continue;
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto& entry = (*it)[i];
      if (!entry.is_object()) continue;
      auto item_id = entry.find("id");
      if (item_id != entry.end() && item_id->is_string() &&
          item_id->get_ref<const std::string&>().rfind(kGoldSetItemPrefix, 0) == 0)
        v.error(pointer(pointer("/" + std::string(list), i), "id"),
                "ids starting with '" + std::string(kGoldSetItemPrefix) +
                    "' are reserved for the gold set's items in a job that references one");
    }
  }
}

// Builds the document like nlohmann's DOM parser, but stops at kMaxJsonDepth and at strings
// holding U+0000.
class BoundedDomParser : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  using Base = nlohmann::detail::json_sax_dom_parser<json>;
  explicit BoundedDomParser(json& root) : Base(root, false) {}

  bool start_object(std::size_t n) { return deeper() && Base::start_object(n); }
  bool start_array(std::size_t n) { return deeper() && Base::start_array(n); }
  bool end_object() {
    --depth_;
    return Base::end_object();
  }
  bool end_array() {
    --depth_;
    return Base::end_array();
  }
  bool key(std::string& s) { return no_nul(s) && Base::key(s); }
  bool string(std::string& s) { return no_nul(s) && Base::string(s); }
  template <class Exception>
  bool parse_error(std::size_t position, const std::string& token, const Exception& e) {
    if (problem_.empty()) problem_ = e.what();
    return Base::parse_error(position, token, e);
  }

  const std::string& problem() const { return problem_; }

 private:
  bool deeper() {
    if (++depth_ <= kMaxJsonDepth) return true;
    problem_ = "the document is nested more than " + std::to_string(kMaxJsonDepth) + " levels deep";
    return false;
  }
  bool no_nul(const std::string& s) {
    if (s.find('\0') == std::string::npos) return true;
    problem_ = "strings must not contain U+0000";
    return false;
  }

  std::size_t depth_ = 0;
  std::string problem_;
};

ParseResult parse_job_impl(const json& body, const std::vector<VendorView>& vendors,
                           std::chrono::system_clock::time_point now, const ValidationLimits& limits,
                           const GoldSetLookup& find_gold_set, bool take_data);

}  // namespace

ParseResult parse_job(const json& body, const std::vector<VendorView>& vendors,
                      std::chrono::system_clock::time_point now, const ValidationLimits& limits,
                      const GoldSetLookup& find_gold_set) {
  return parse_job_impl(body, vendors, now, limits, find_gold_set, false);
}

ParseResult parse_job(json&& body, const std::vector<VendorView>& vendors, std::chrono::system_clock::time_point now,
                      const ValidationLimits& limits, const GoldSetLookup& find_gold_set) {
  return parse_job_impl(body, vendors, now, limits, find_gold_set, true);
}

ItemsParseResult parse_items(json&& body, const std::vector<std::string>& labels, const ValidationLimits& limits) {
  ItemsParseResult result;
  if (!body.is_object()) {
    result.errors.push_back({"", "the body must be a JSON object {items, gold}"});
    return result;
  }
  Validator v(body, limits);
  v.unknown_keys(body, "", {"items", "gold"});
  ValidationLimits relaxed = limits;
  // Gold alone is a valid append; an empty request is not.
  const auto gold = body.find("gold");
  relaxed.allow_no_items = gold != body.end() && gold->is_array() && !gold->empty();
  parse_item_lists(v, body, labels, relaxed, true, result.items, result.gold);
  result.errors = v.take_errors();
  return result;
}

GoldSetParseResult parse_gold_set(json&& body, const ValidationLimits& limits) {
  GoldSetParseResult result;
  if (!body.is_object()) {
    result.errors.push_back({"", "the gold set must be a JSON object {name, task_type, labels, items}"});
    return result;
  }
  Validator v(body, limits);
  GoldSetSpec set;
  v.unknown_keys(body, "", kGoldSetKeys);
  set.name = v.string("name", true, 200).value_or("");
  const auto task_type = task_type_field(v);
  if (task_type) set.task_type = *task_type;
  set.labels = labels_field(v, body, task_type, limits);
  if (auto it = body.find("items"); it == body.end() || !it->is_array() || it->empty()) {
    v.error("/items", "is required: a non-empty array of {id, data, answer}");
  } else if (it->size() > limits.max_items) {
    v.error("/items", "a gold set may have at most " + std::to_string(limits.max_items) + " items");
  } else {
    IdSet ids;
    ids.reserve(it->size());
    gold_entries(v, *it, "/items", set.labels, true, ids, "duplicates an earlier item id", set.items);
  }
  result.errors = v.take_errors();
  if (result.errors.empty()) result.gold_set = std::move(set);
  return result;
}

ParsedDocument parse_document(std::string_view text) {
  ParsedDocument out;
  BoundedDomParser parser(out.document);
  const bool ok = json::sax_parse(text.begin(), text.end(), &parser, json::input_format_t::json, false);
  if (ok && !parser.is_errored()) return out;
  out.document = json();
  out.problem = parser.problem().empty() ? "the body is not valid JSON" : parser.problem();
  // nlohmann's messages start with "[json.exception.parse_error.101] ": keep the readable part.
  if (auto bracket = out.problem.find("] ");
      out.problem.rfind("[json.exception", 0) == 0 && bracket != std::string::npos)
    out.problem = out.problem.substr(bracket + 2);
  return out;
}

namespace {

ParseResult parse_job_impl(const json& body, const std::vector<VendorView>& vendors,
                           std::chrono::system_clock::time_point now, const ValidationLimits& limits,
                           const GoldSetLookup& find_gold_set, bool take_data) {
  ParseResult result;
  if (!body.is_object()) {
    result.errors.push_back({"", "the job must be a JSON object"});
    return result;
  }
  Validator v(body, limits);
  JobSpec job;
  v.unknown_keys(body, "", kKnownKeys);

  job.name = v.string("name", true, 200).value_or("");
  const auto task_type = task_type_field(v);
  if (task_type) job.task_type = *task_type;
  job.domain = v.string("domain", true, 100).value_or("");
  if (auto e = v.string("expertise", false)) {
    if (auto parsed = vendors::parse_expertise(*e))
      job.expertise = *parsed;
    else
      v.error("/expertise", "must be one of general, skilled, expert");
  }
  job.instructions = v.string("instructions", false, 100000).value_or("");

  job.labels = labels_field(v, body, task_type, limits);

  parse_item_lists(v, body, job.labels, limits, take_data, job.items, job.gold);
  gold_set_field(v, body, job, task_type, find_gold_set);

  if (auto it = body.find("redundancy"); it != body.end()) {
    if (!it->is_number_integer() || it->get<long long>() < 1 || it->get<long long>() > 100)
      v.error("/redundancy", "must be an integer from 1 to 100");
    else
      job.redundancy = static_cast<int>(it->get<long long>());
  }

  if (auto it = body.find("quality"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) {
      v.error("/quality", "must be an object");
    } else {
      v.unknown_keys(*it, "/quality", {"min_vendor_accuracy"});
      if (auto acc = it->find("min_vendor_accuracy"); acc != it->end()) {
        if (!acc->is_number() || acc->get<double>() < 0 || acc->get<double>() > 1)
          v.error("/quality/min_vendor_accuracy", "must be a number from 0 to 1");
        else
          job.min_vendor_accuracy = acc->get<double>();
      }
    }
  }

  // Money as a decimal string, never a binary float.
  if (auto budget = v.string("budget_usd", true)) {
    auto micros = common::parse_usd_micros(*budget);
    if (!budget->empty() && (!micros || *micros <= 0))
      v.error("/budget_usd", "must be a positive decimal amount in USD, such as \"250.00\"");
    else if (micros)
      job.budget_micros = *micros;
  }
  if (auto deadline = v.string("deadline", true)) {
    auto parsed = common::parse_rfc3339(*deadline);
    if (!deadline->empty() && !parsed)
      v.error("/deadline", "must be an RFC 3339 time, such as \"2026-12-01T00:00:00Z\"");
    else if (parsed && *parsed <= now)
      v.error("/deadline", "must be in the future");
    else if (parsed)
      job.deadline = *parsed;
  }

  if (auto it = body.find("vendors"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) {
      v.error("/vendors", "must be an object {allow, deny}");
    } else {
      v.unknown_keys(*it, "/vendors", {"allow", "deny"});
      if (auto allow = it->find("allow"); allow != it->end())
        job.allow = vendor_names(v, *allow, "/vendors/allow", vendors);
      if (auto deny = it->find("deny"); deny != it->end()) job.deny = vendor_names(v, *deny, "/vendors/deny", vendors);
    }
  }
  if (auto o = v.string("optimize", false)) {
    if (auto parsed = routing::parse_optimize(*o))
      job.optimize = *parsed;
    else
      v.error("/optimize", "must be one of quality, cost, balanced");
  }
  if (auto url = v.string("callback_url", false, 2000)) {
    if (!url->empty() && url->rfind("https://", 0) != 0 && url->rfind("http://", 0) != 0)
      v.error("/callback_url", "must be an http:// or https:// URL");
    job.callback_url = *url;
  }

  // Eligibility: what this job can actually be sent to.
  for (const auto& vendor : vendors) {
    const bool allowed = job.allow.empty() || std::count(job.allow.begin(), job.allow.end(), vendor.id);
    const bool denied = std::count(job.deny.begin(), job.deny.end(), vendor.id) > 0;
    if (vendor.enabled && allowed && !denied && vendor.capabilities.supports(job.task_type, job.domain, job.expertise))
      job.eligible_vendors.push_back(vendor.id);
  }
  if (v.ok()) {
    if (job.eligible_vendors.empty()) {
      v.error("/vendors", "no configured vendor takes " + std::string(vendors::to_string(job.task_type)) + " work in " +
                              job.domain + " at " + std::string(vendors::to_string(job.expertise)) +
                              " level within the allow/deny lists");
    } else if (static_cast<std::size_t>(job.redundancy) > job.eligible_vendors.size()) {
      v.error("/redundancy", "is " + std::to_string(job.redundancy) + " but only " +
                                 std::to_string(job.eligible_vendors.size()) +
                                 " eligible vendors can judge each item (judgments of an item go to distinct vendors)");
    }
  }

  result.errors = v.take_errors();
  if (result.errors.empty()) result.job = std::move(job);
  return result;
}

}  // namespace

}  // namespace labelbroker::jobs
