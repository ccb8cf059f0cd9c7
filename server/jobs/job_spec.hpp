#pragma once
// A labeling job as a team submits it (POST /v1/jobs), parsed and validated as a whole.
//
// Pure: no I/O. The clock and the configured vendors come in as arguments, so the rules are
// tested without a server. Every problem is reported at once, each located by a JSON Pointer into
// the request body, so a client fixes its job in one round trip.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/problem.hpp"
#include "routing/allocation.hpp"
#include "vendors/adapter.hpp"

namespace labelbroker::jobs {

struct JobItem {
  std::string id;
  nlohmann::json data;  // an object
};

struct GoldItem {
  std::string id;
  nlohmann::json data;
  std::string answer;  // one of the job's labels
};

// What the job asks routing to weigh (quality, cost or balanced): routing's own type.
using routing::Optimize;

// What job validation needs to know about a gold set the job references.
struct GoldSetView {
  std::string id;
  std::string task_type;  // as stored: classification, preference or rating
  std::vector<std::string> labels;
  std::size_t item_count = 0;
};

// Finds one of the submitting team's gold sets by id (a UUID). nullopt when the team has none
// with this id, which includes another team's set: intake must not tell the two apart.
using GoldSetLookup = std::function<std::optional<GoldSetView>(const std::string& id)>;

// A gold set's items join a job that references it as gold items named kGoldSetItemPrefix + the
// set item's id; the job's own ids may not take that form, so the two can never collide.
inline constexpr std::string_view kGoldSetItemPrefix = "set:";

struct JobSpec {
  std::string name;
  vendors::TaskType task_type = vendors::TaskType::classification;
  std::string domain;
  vendors::Expertise expertise = vendors::Expertise::general;
  std::string instructions;
  std::vector<std::string> labels;
  std::vector<JobItem> items;
  std::vector<GoldItem> gold;
  int redundancy = 1;
  std::optional<double> min_vendor_accuracy;
  std::int64_t budget_micros = 0;
  std::chrono::system_clock::time_point deadline;
  std::vector<std::string> allow;  // empty: every vendor
  std::vector<std::string> deny;
  Optimize optimize = Optimize::balanced;
  std::string callback_url;
  std::vector<std::string> eligible_vendors;  // after capabilities and allow/deny, in config order
  std::optional<GoldSetView> gold_set;        // the team's gold set named by "gold_set", as found
};

// What validation needs to know about one configured vendor.
struct VendorView {
  std::string id;
  vendors::Capabilities capabilities;
  bool enabled = true;
};

struct ValidationLimits {
  std::size_t max_items = 1000000;
  std::size_t max_labels = 1000;
  std::size_t max_id_length = 256;
  // A draft job (POST /v1/jobs?draft=true) may arrive without items: they are appended later.
  bool allow_no_items = false;
};

struct ParseResult {
  std::optional<JobSpec> job;            // set when there are no errors
  std::vector<http::FieldError> errors;  // every problem, in document order
};

// A "gold_set" is looked up with `find_gold_set` (none given: no gold set exists), and must be of
// the job's task type with labels that are all among the job's.
ParseResult parse_job(const nlohmann::json& body, const std::vector<VendorView>& vendors,
                      std::chrono::system_clock::time_point now, const ValidationLimits& limits = {},
                      const GoldSetLookup& find_gold_set = {});
// The same, but moves each item's `data` out of `body` instead of copying it: intake owns the
// parsed body, and a million items' data need not exist twice.
ParseResult parse_job(nlohmann::json&& body, const std::vector<VendorView>& vendors,
                      std::chrono::system_clock::time_point now, const ValidationLimits& limits = {},
                      const GoldSetLookup& find_gold_set = {});

// Items appended to a draft job (POST /v1/jobs/{id}/items): {"items": [...], "gold": [...]},
// checked exactly like a job's own lists (ids unique within the request, data objects, gold
// answers among `labels`). Uniqueness against items already stored is the store's to check.
struct ItemsParseResult {
  std::vector<JobItem> items;
  std::vector<GoldItem> gold;
  std::vector<http::FieldError> errors;  // empty: valid
};
ItemsParseResult parse_items(nlohmann::json&& body, const std::vector<std::string>& labels,
                             const ValidationLimits& limits = {});

// A reusable gold set as a team submits it (POST /v1/gold-sets): {name, task_type, labels,
// items: [{id, data, answer}]}. Labels follow a job's rules, items a job's gold list's (ids unique,
// data objects, answers among the labels), and there is at least one item.
struct GoldSetSpec {
  std::string name;
  vendors::TaskType task_type = vendors::TaskType::classification;
  std::vector<std::string> labels;
  std::vector<GoldItem> items;
};

// Jobs copy a referenced set's items at intake, so a set is kept to a size a job takes in one go.
inline constexpr std::size_t kMaxGoldSetItems = 100000;

struct GoldSetParseResult {
  std::optional<GoldSetSpec> gold_set;   // set when there are no errors
  std::vector<http::FieldError> errors;  // every problem, each with its JSON Pointer
};
// Moves each item's `data` out of `body`, like parse_job(json&&).
GoldSetParseResult parse_gold_set(nlohmann::json&& body,
                                  const ValidationLimits& limits = {.max_items = kMaxGoldSetItems});

// A request body as a JSON document, refused (problem set, document empty) when it is not JSON
// (syntax, invalid UTF-8), is nested deeper than kMaxJsonDepth, or has a string holding U+0000.
// Nothing a job or gold set holds needs deeper nesting, which would make recursive code
// (serialisation, comparison) exhaust the stack; PostgreSQL stores U+0000 in neither text nor
// jsonb.
inline constexpr std::size_t kMaxJsonDepth = 64;
struct ParsedDocument {
  nlohmann::json document;
  std::string problem;  // empty: parsed
};
ParsedDocument parse_document(std::string_view text);

}  // namespace labelbroker::jobs
