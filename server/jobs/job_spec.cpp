#include "jobs/job_spec.hpp"

#include <algorithm>
#include <set>
#include <string_view>
#include <unordered_set>

#include "common/money.hpp"
#include "common/time.hpp"

namespace labelbroker::jobs {
namespace {

using nlohmann::json;

const std::set<std::string> kKnownKeys = {"name",       "task_type", "domain",  "expertise",  "instructions",
                                          "labels",     "items",     "gold",    "redundancy", "quality",
                                          "budget_usd", "deadline",  "vendors", "optimize",   "callback_url"};

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

// Items (and gold): unique ids across both lists, data objects, gold answers among `labels` (not
// checked when `labels` is empty: the labels themselves are then reported as missing).
void parse_item_lists(Validator& v, const json& body, const std::vector<std::string>& labels,
                      const ValidationLimits& limits, bool take_data, std::vector<JobItem>& items,
                      std::vector<GoldItem>& gold_items) {
  // Views into the document's own id strings, which stay put while we read: no copy per id.
  std::unordered_set<std::string_view> ids;
  auto remember = [&](const json& entry) -> bool {
    auto it = entry.find("id");
    if (it == entry.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return true;
    return ids.insert(it->get_ref<const std::string&>()).second;
  };
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
      if (!remember(entry)) v.error(where + "/id", "duplicates an earlier item id");
      items.push_back(std::move(item));
    }
  }
  if (auto it = body.find("gold"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) {
      v.error("/gold", "must be an array of {id, data, answer}");
    } else if (it->size() > limits.max_items) {
      v.error("/gold", "may have at most " + std::to_string(limits.max_items) + " items per request");
    } else {
      gold_items.reserve(it->size());
      for (std::size_t i = 0; i < it->size(); ++i) {
        const auto where = pointer("/gold", i);
        const auto& entry = (*it)[i];
        if (!entry.is_object()) {
          v.error(where, "must be an object {id, data, answer}");
          continue;
        }
        v.unknown_keys(entry, where, kGoldKeys);
        GoldItem gold{v.id(entry, where), v.data(entry, where, take_data), ""};
        if (!remember(entry)) v.error(where + "/id", "duplicates an item or gold id");
        auto answer = entry.find("answer");
        if (answer == entry.end() || !answer->is_string()) {
          v.error(where + "/answer", "is required: one of the labels");
        } else {
          gold.answer = answer->get<std::string>();
          if (!labels.empty() && std::find(labels.begin(), labels.end(), gold.answer) == labels.end())
            v.error(where + "/answer", "'" + gold.answer + "' is not one of the labels");
        }
        gold_items.push_back(std::move(gold));
      }
    }
  }
}

ParseResult parse_job_impl(const json& body, const std::vector<VendorView>& vendors,
                           std::chrono::system_clock::time_point now, const ValidationLimits& limits,
                           bool take_data);

}  // namespace

ParseResult parse_job(const json& body, const std::vector<VendorView>& vendors,
                      std::chrono::system_clock::time_point now, const ValidationLimits& limits) {
  return parse_job_impl(body, vendors, now, limits, false);
}

ParseResult parse_job(json&& body, const std::vector<VendorView>& vendors, std::chrono::system_clock::time_point now,
                      const ValidationLimits& limits) {
  return parse_job_impl(body, vendors, now, limits, true);
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

std::string_view to_string(Optimize o) {
  switch (o) {
    case Optimize::quality:
      return "quality";
    case Optimize::cost:
      return "cost";
    case Optimize::balanced:
      return "balanced";
  }
  return "balanced";
}

namespace {

ParseResult parse_job_impl(const json& body, const std::vector<VendorView>& vendors,
                           std::chrono::system_clock::time_point now, const ValidationLimits& limits,
                           bool take_data) {
  ParseResult result;
  if (!body.is_object()) {
    result.errors.push_back({"", "the job must be a JSON object"});
    return result;
  }
  Validator v(body, limits);
  JobSpec job;
  v.unknown_keys(body, "", kKnownKeys);

  job.name = v.string("name", true, 200).value_or("");
  if (auto t = v.string("task_type", true)) {
    if (auto parsed = vendors::parse_task_type(*t))
      job.task_type = *parsed;
    else if (!t->empty())
      v.error("/task_type", "must be one of classification, preference, rating");
  }
  job.domain = v.string("domain", true, 100).value_or("");
  if (auto e = v.string("expertise", false)) {
    if (auto parsed = vendors::parse_expertise(*e))
      job.expertise = *parsed;
    else
      v.error("/expertise", "must be one of general, skilled, expert");
  }
  job.instructions = v.string("instructions", false, 100000).value_or("");

  // Labels: at least two distinct, non-empty strings.
  if (auto it = body.find("labels"); it == body.end() || !it->is_array()) {
    v.error("/labels", "is required: an array of at least two distinct strings");
  } else {
    std::set<std::string> seen;
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto& label = (*it)[i];
      if (!label.is_string() || label.get<std::string>().empty()) {
        v.error(pointer("/labels", i), "must be a non-empty string");
        continue;
      }
      if (!seen.insert(label.get<std::string>()).second) v.error(pointer("/labels", i), "duplicates an earlier label");
      job.labels.push_back(label.get<std::string>());
    }
    if (it->size() < 2) v.error("/labels", "needs at least two labels");
    if (it->size() > limits.max_labels)
      v.error("/labels", "may have at most " + std::to_string(limits.max_labels) + " labels");
    if (job.task_type == vendors::TaskType::preference && it->size() != 2)
      v.error("/labels", "a preference task compares exactly two options");
  }

  parse_item_lists(v, body, job.labels, limits, take_data, job.items, job.gold);

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
    if (*o == "quality")
      job.optimize = Optimize::quality;
    else if (*o == "cost")
      job.optimize = Optimize::cost;
    else if (*o == "balanced")
      job.optimize = Optimize::balanced;
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
