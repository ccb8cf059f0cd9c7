#pragma once
// The vendor-sim scenario: which simulated vendors exist, how each speaks (kind), and how each
// behaves (accuracy, latency, capacity, faults, outages, drift). Loaded once at start-up from
// JSON with comments and validated strictly: unknown keys, wrong types and out-of-range values are
// rejected with a ScenarioError whose message is one line naming the JSON path.
//
// Behaviour is also the unit of live change: POST /_sim/vendors/{id} applies a patch with the same
// keys (apply_behaviour_patch), validated the same way.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace labelbroker::vendors::sim {

class ScenarioError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Kind { scale, surge, mercor };
std::string_view kind_name(Kind kind);

// A duration distribution. fixed: always fixed_ms. lognormal: median p50_ms, 95th percentile p95_ms.
// (minutes_per_item reuses it with minutes in the *_ms fields.)
struct Distribution {
  bool lognormal = false;
  double fixed_ms = 0;
  double p50_ms = 0;
  double p95_ms = 0;
};

// One accuracy entry. Empty fields match anything ("*" in the scenario).
struct AccuracyRule {
  std::string domain;
  std::string task_type;
  std::string expertise;
  double accuracy = 0;
};

// Keys "domain[/task_type[/expertise]]" with "*" as a wildcard; "*" alone is the default. The most
// specific matching rule wins (domain weighs more than task type, task type more than expertise).
struct AccuracyTable {
  double default_accuracy = 0.8;
  std::vector<AccuracyRule> rules;
  double lookup(std::string_view domain, std::string_view task_type, std::string_view expertise) const;
};

struct Faults {
  double error_rate_5xx = 0;      // answer 500 before doing anything
  double lost_response_rate = 0;  // POSTs: do the work, then answer 500 (the client cannot know)
  double rate_429 = 0;            // answer 429 with Retry-After: retry_after_s
  int retry_after_s = 1;
  double hang_rate = 0;  // do the work, then hold the response for hang_ms
  int hang_ms = 30000;
  double dropped_callback_rate = 0;  // a completed task's callback is never sent
};

// A window during which every request to the vendor gets 503. Either relative to process start
// (start_s/end_s) or absolute (RFC 3339).
struct OutageWindow {
  std::optional<std::chrono::seconds> start_relative, end_relative;
  std::optional<std::chrono::system_clock::time_point> start_absolute, end_absolute;
};

// Accuracy changes by accuracy_delta (clamped to [0,1]) once the trigger has passed: after N tasks
// were created, after_s seconds after process start, or at an absolute time. A rule may be scoped
// to one domain and/or task type ("scale's medical accuracy falls"); empty scope fields match any.
struct DriftRule {
  std::optional<std::uint64_t> after_tasks;
  std::optional<std::chrono::seconds> after;
  std::optional<std::chrono::system_clock::time_point> at;
  double accuracy_delta = 0;
  std::string domain;     // empty: every domain
  std::string task_type;  // empty: every task type
  bool applies_to(std::string_view unit_domain, std::string_view unit_task_type) const {
    return (domain.empty() || domain == unit_domain) && (task_type.empty() || task_type == unit_task_type);
  }
};

// One-shot deterministic faults for tests: the next `count` requests (to vendor API routes) answer
// `status`; with after_commit, only POSTs are counted and the work is done before the failure.
struct FailNext {
  int count = 0;
  int status = 500;
  bool after_commit = false;
};

struct Behaviour {
  AccuracyTable accuracy;
  Distribution latency;      // working time, from start to completion
  Distribution queue_delay;  // time a task waits before a worker starts it (cancel is allowed until then)
  int max_in_flight = 1000;  // queued + in progress; beyond it creates get 429
  Faults faults;
  std::vector<OutageWindow> outages;
  std::vector<DriftRule> drift;
  bool outage = false;  // live switch: everything 503
  bool paused = false;  // live switch: no task starts (they stay queued and cancelable)
  FailNext fail_next;
};

struct Expert {
  std::string id;
  std::map<std::string, double> domain_scores;
  std::int64_t hourly_rate_micros = 0;
  int available_hours = 40;
};

struct VendorSpec {
  std::string id;  // also the URL prefix: /<id>/...
  Kind kind = Kind::scale;
  std::string api_key;
  std::string callback_secret;
  std::uint64_t seed = 0;  // derived from the scenario seed and the id unless given
  Behaviour behaviour;
  // scale: price per completed task by Scale task type (categorization, comparison, textcollection).
  std::map<std::string, std::int64_t> prices_micros;
  // surge: used when a project does not set payment_per_response.
  std::int64_t payment_per_response_micros = 0;
  // mercor: the expert pool and how long an item takes an expert (minutes, as a distribution).
  std::vector<Expert> experts;
  Distribution minutes_per_item{false, 10, 0, 0};
};

struct CallbackPolicy {
  int threads = 2;
  int max_attempts = 5;
  std::chrono::milliseconds backoff{200};  // doubled after each failed attempt
  std::chrono::milliseconds timeout{5000};
};

struct Scenario {
  std::string source;  // file name, for messages
  std::uint64_t seed = 1;
  std::string listen;  // empty: the CLI default
  int io_threads = 1;
  int worker_threads = 16;
  bool access_log = false;  // one JSON line per request on stderr
  CallbackPolicy callbacks;
  std::vector<VendorSpec> vendors;
  // The "eval" section: labelbroker-eval's workload (tools/eval/workload.hpp validates it).
  // vendor-sim only checks that it is an object and otherwise ignores it. Null when absent.
  nlohmann::json eval;
};

// Throws ScenarioError ("<source>: $.vendors[1].accuracy.medical: must be between 0 and 1").
Scenario parse_scenario(std::string_view text, const std::string& source);
Scenario load_scenario(const std::string& path);

// Applies a live patch (same keys as a vendor's behaviour in the scenario, plus "outage", "paused"
// and "fail_next"; fault keys may also be given at the top level). All-or-nothing: on error the
// behaviour is unchanged and ScenarioError names the offending key ("$.faults.rate_429: ...").
void apply_behaviour_patch(Behaviour& behaviour, const nlohmann::json& patch);

nlohmann::json behaviour_to_json(const Behaviour& behaviour);

}  // namespace labelbroker::vendors::sim
