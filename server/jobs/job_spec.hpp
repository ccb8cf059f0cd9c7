#pragma once
// A labeling job as a team submits it (POST /v1/jobs), parsed and validated as a whole.
//
// Pure: no I/O. The clock and the configured vendors come in as arguments, so the rules are
// tested without a server. Every problem is reported at once, each located by a JSON Pointer into
// the request body, so a client fixes its job in one round trip.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/problem.hpp"
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

enum class Optimize { quality, cost, balanced };

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

ParseResult parse_job(const nlohmann::json& body, const std::vector<VendorView>& vendors,
                      std::chrono::system_clock::time_point now, const ValidationLimits& limits = {});
// The same, but moves each item's `data` out of `body` instead of copying it: intake owns the
// parsed body, and a million items' data need not exist twice.
ParseResult parse_job(nlohmann::json&& body, const std::vector<VendorView>& vendors,
                      std::chrono::system_clock::time_point now, const ValidationLimits& limits = {});

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

std::string_view to_string(Optimize o);

}  // namespace labelbroker::jobs
