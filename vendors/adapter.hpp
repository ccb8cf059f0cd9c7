#pragma once
// The contract between the broker and a labeling vendor. One VendorAdapter instance talks to one
// configured vendor (several vendors of the same kind are several instances).
//
// Threading: adapters are called from the broker's worker threads (never from HTTP I/O threads);
// calls block until the vendor answered or the adapter gave up, and are safe to make concurrently
// from several threads. Network I/O happens on the shared vendor HTTP client's own threads.
// Errors: every failure is a VendorError carrying an ErrorClass, so callers decide by class
// (retry later, move the unit elsewhere, treat as done) and never by parsing messages. Malformed
// vendor responses are VendorError{permanent or retryable}, never crashes.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace labelbroker::vendors {

enum class TaskType { classification, preference, rating };
enum class Expertise { general, skilled, expert };

std::string_view to_string(TaskType t);
std::string_view to_string(Expertise e);
std::optional<TaskType> parse_task_type(std::string_view s);
std::optional<Expertise> parse_expertise(std::string_view s);

struct Capabilities {
  std::vector<TaskType> task_types;
  std::vector<std::string> domains;  // empty: any domain
  std::vector<Expertise> expertise;
  std::size_t max_batch_size = 100;  // units per submit() call
  std::size_t max_in_flight = 64;    // concurrent requests to the vendor
  bool supports(TaskType t, std::string_view domain, Expertise e) const;
};

// One judgment the broker wants from a vendor: item x vendor x attempt. Gold units look exactly
// like the others.
struct WorkUnit {
  std::string assignment_id;  // the broker's id, also the idempotency key at the vendor
  std::string job_id;
  std::string item_ref;  // opaque to the vendor
  TaskType task_type = TaskType::classification;
  std::string domain;
  Expertise expertise = Expertise::general;
  std::string instructions;
  std::vector<std::string> labels;
  nlohmann::json data = nlohmann::json::object();
  // An earlier send of this unit (by this or another broker process) may have reached the vendor.
  // Adapters whose vendor has no idempotency key must look before creating it again.
  bool may_exist = false;
};

enum class ErrorClass {
  retryable,  // timeout, 408, 429 (retry_after set), 5xx, connection failure: try again later
  permanent,  // other 4xx, malformed response, bad config: do not retry this request as is
  duplicate,  // already created: the adapter resolves it to the existing task where it can
  capacity,   // the vendor cannot take the work now (in-flight cap, weekly cap): route elsewhere
  auth,       // 401/403: the key is wrong; retrying will not help
};
std::string_view to_string(ErrorClass c);

class VendorError : public std::runtime_error {
 public:
  VendorError(ErrorClass error_class, std::string message, int http_status = 0,
              std::optional<std::chrono::milliseconds> retry_after = std::nullopt)
      : std::runtime_error(std::move(message)),
        error_class_(error_class),
        http_status_(http_status),
        retry_after_(retry_after) {}
  ErrorClass error_class() const { return error_class_; }
  int http_status() const { return http_status_; }  // 0 when no HTTP response was received
  std::optional<std::chrono::milliseconds> retry_after() const { return retry_after_; }

 private:
  ErrorClass error_class_;
  int http_status_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

struct SubmittedUnit {
  std::string assignment_id;
  std::string vendor_task_id;
  bool already_existed = false;  // a duplicate create resolved to the task created earlier
};

struct UnitFailure {
  std::string assignment_id;
  ErrorClass error_class = ErrorClass::retryable;
  std::string message;
  std::optional<std::chrono::milliseconds> retry_after;
};

// Per-unit outcome of a batch: some units may be created while others fail.
struct SubmitResult {
  std::vector<SubmittedUnit> submitted;
  std::vector<UnitFailure> failed;
};

enum class UnitStatus { pending, in_progress, completed, canceled, failed };
std::string_view to_string(UnitStatus s);

struct UnitResult {
  std::string assignment_id;  // empty if the vendor did not echo it back
  std::string vendor_task_id;
  UnitStatus status = UnitStatus::pending;
  std::optional<std::string> answer;  // one of the unit's labels (or free text for rating)
  std::optional<std::string> worker_id;
  std::optional<std::chrono::milliseconds> time_spent;
  std::optional<std::int64_t> cost_micros;  // what the vendor charged, in micro-dollars
  std::optional<std::chrono::system_clock::time_point> completed_at;
};

// A reference to work already at the vendor.
struct UnitRef {
  std::string assignment_id;
  std::string vendor_task_id;
};

// unsupported: the vendor's API cannot cancel a single unit (Surge cancels whole projects); the
// unit will be worked and billed, so the caller must treat it like already_started.
enum class CancelOutcome { canceled, already_started, already_finished, not_found, unsupported };
std::string_view to_string(CancelOutcome c);

// What the broker received on POST /v1/callbacks/{vendor_id}.
struct InboundCallback {
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::pair<std::string, std::string>> query;
  std::string body;
  std::chrono::system_clock::time_point received_at = std::chrono::system_clock::now();
  std::optional<std::string_view> header(std::string_view name) const;
  std::optional<std::string_view> query_param(std::string_view name) const;
};

// Thrown by parse_callback when the callback is not authentic (answer 401).
class CallbackRejected : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class VendorAdapter {
 public:
  virtual ~VendorAdapter() = default;

  virtual const std::string& id() const = 0;  // as configured, e.g. "scale-small"
  virtual std::string_view kind() const = 0;  // "scale", "surge", "mercor"
  virtual const Capabilities& capabilities() const = 0;

  // Expected charge for one unit, from the configured price table. Never does I/O.
  virtual std::int64_t quote_micros(const WorkUnit& unit) const = 0;

  // Creates the units at the vendor (at most capabilities().max_batch_size). Idempotent: calling
  // again with the same assignment ids never creates a second task. Throws VendorError only when
  // nothing could be attempted (e.g. auth); per-unit problems are in SubmitResult::failed.
  virtual SubmitResult submit(const std::vector<WorkUnit>& units) = 0;

  // Current state of units at the vendor. Units the vendor does not know are absent.
  virtual std::vector<UnitResult> poll(const std::vector<UnitRef>& units) = 0;

  // Every broker unit the vendor changed at or after `since`, paging through the vendor's list
  // API: one call instead of one request per unit. nullopt when the vendor has no such API (then
  // use poll()). Throws VendorError.
  virtual std::optional<std::vector<UnitResult>> poll_updated_since(std::chrono::system_clock::time_point since) {
    (void)since;
    return std::nullopt;
  }

  virtual CancelOutcome cancel(const UnitRef& unit) = 0;

  // Cancels all of a job's work that has not started, where the vendor can do that in bulk
  // (Surge cancels whole projects). Returns the number of projects/batches canceled, or nullopt
  // when the vendor has no such operation (then cancel() unit by unit). Throws VendorError.
  virtual std::optional<std::size_t> cancel_job(const std::string& job_id) {
    (void)job_id;
    return std::nullopt;
  }

  // Verifies and parses a vendor callback. Throws CallbackRejected if not authentic and
  // VendorError{permanent} if authentic but malformed.
  virtual std::vector<UnitResult> parse_callback(const InboundCallback& callback) = 0;

  // Cheap liveness of the vendor API (for GET /v1/vendors). Never throws.
  virtual nlohmann::json describe() const = 0;
};

}  // namespace labelbroker::vendors
