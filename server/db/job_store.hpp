#pragma once
// Jobs and their items in PostgreSQL (schema/0002): intake with COPY, idempotency, drafts, and the
// read side (a job with its progress, the team's job list, results). Parameterised SQL only; every
// function is one transaction on the caller's connection (a pool lease). Every read and write is
// scoped by team: another team's job is indistinguishable from a job that does not exist.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/connection>

namespace labelbroker::db {

using TimePoint = std::chrono::system_clock::time_point;

// Job statuses, as the jobs.status CHECK constraint lists them.
bool is_job_status(std::string_view status);

// A job as intake stores it (already validated by jobs::parse_job).
struct NewJob {
  std::int64_t team_id = 0;
  bool draft = false;  // draft: items may still be appended; otherwise queued for dispatch
  std::string name;
  std::string task_type;
  std::string domain;
  std::string expertise;
  std::string instructions;
  std::vector<std::string> labels;
  int redundancy = 1;
  std::optional<double> min_vendor_accuracy;
  std::int64_t budget_micros = 0;
  TimePoint deadline;
  std::vector<std::string> allow_vendors;
  std::vector<std::string> deny_vendors;
  std::vector<std::string> eligible_vendors;
  std::string optimize;
  std::string callback_url;  // empty: none
  std::optional<std::string> idempotency_key;
  std::string request_sha256;  // of the request body, to tell a replay from a reused key
  // One of the team's gold sets (validated at intake): its items are copied into the job as gold
  // items named gold_set_item_prefix + the set item's id, and count towards gold_count.
  std::optional<std::string> gold_set_id;
  std::string gold_set_item_prefix;
};

// One item to store, pointing into the caller's parsed request (nothing is copied until COPY).
struct ItemRef {
  const std::string* id = nullptr;
  const nlohmann::json* data = nullptr;
  const std::string* gold_answer = nullptr;  // null: an ordinary item
};

enum class CreateOutcome {
  created,     // a new job; job_id is it
  replayed,    // the Idempotency-Key was used before with the same body; job_id is that job
  key_reused,  // the Idempotency-Key was used before with a different body; job_id is that job
};
struct CreateResult {
  CreateOutcome outcome = CreateOutcome::created;
  std::string job_id;
};

// The job a team created with this Idempotency-Key, if any, and the hash of the body it was
// created from. A cheap check before parsing a large body.
struct KeyedJob {
  std::string job_id;
  std::string request_sha256;
};
std::optional<KeyedJob> find_job_by_idempotency_key(pqxx::connection& c, std::int64_t team_id,
                                                    const std::string& key);

// Inserts the job row and COPYs its items into job_items (and the gold set's items, if the job
// references one), in one transaction: the dispatcher never sees a queued job with part of its
// items. With an Idempotency-Key, a concurrent request with the same key waits on the unique
// index and then finds the committed job (no second job).
CreateResult create_job(pqxx::connection& c, const NewJob& job, const std::vector<ItemRef>& items);

// ---- drafts -----------------------------------------------------------------------------------

// What appending to a job needs to know first: its status and labels (gold answers must be among
// them). nullopt: no such job for this team.
struct JobHeader {
  std::string status;
  std::vector<std::string> labels;
};
std::optional<JobHeader> load_job_header(pqxx::connection& c, std::int64_t team_id, const std::string& job_id);

enum class AppendOutcome { appended, not_found, not_draft, too_many, duplicate_ids };
struct AppendResult {
  AppendOutcome outcome = AppendOutcome::appended;
  std::size_t item_count = 0;  // after the call (items and gold separately)
  std::size_t gold_count = 0;
  std::vector<std::string> duplicate_ids;  // ids already stored in the job (at most 100 listed)
};
// Appends items to a draft job, under a lock on the job row (appends and start serialise).
AppendResult append_items(pqxx::connection& c, std::int64_t team_id, const std::string& job_id,
                          const std::vector<ItemRef>& items, std::size_t max_items_per_job);

enum class StartOutcome { started, not_found, not_draft, no_items };
// Moves a draft job with at least one item to queued (the dispatcher takes it from there).
StartOutcome start_job(pqxx::connection& c, std::int64_t team_id, const std::string& job_id);

// ---- reads ------------------------------------------------------------------------------------

struct VendorProgress {
  std::string vendor_id;
  std::map<std::string, std::int64_t> assignments;  // state -> count (states present only)
  std::int64_t spend_micros = 0;   // cost of completed assignments
  std::int64_t quoted_micros = 0;  // quotes of assignments not failed or canceled
};

struct JobRecord {
  std::string id;
  std::string name;
  std::string status;
  std::string task_type;
  std::string domain;
  std::string expertise;
  std::vector<std::string> labels;
  int redundancy = 1;
  std::optional<double> min_vendor_accuracy;
  std::int64_t budget_micros = 0;
  TimePoint deadline;
  TimePoint created_at;
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;
  std::string callback_url;  // empty: none
  std::vector<std::string> allow_vendors;
  std::vector<std::string> deny_vendors;
  std::vector<std::string> eligible_vendors;
  std::string optimize;
  std::string end_reason;  // empty: none
  std::int64_t item_count = 0;
  std::int64_t gold_count = 0;
  std::optional<std::string> gold_set_id;
  std::optional<std::string> budget_reason;  // why the job is budget_exhausted
};

// A job with its progress (GET /v1/jobs/{id}).
struct JobDetail {
  JobRecord job;
  // Non-gold items by state (open, labeled, unlabeled; zero when absent).
  std::int64_t open = 0;
  std::int64_t labeled = 0;
  std::int64_t unlabeled = 0;
  std::map<std::string, std::int64_t> assignments;  // state -> count over all vendors
  std::vector<VendorProgress> per_vendor;           // vendors with assignments, by id
  std::int64_t held_micros = 0;                     // the ledger: quotes held for work in flight
  std::int64_t spent_micros = 0;                    //   charges settled (real and gold)
  std::int64_t qa_overhead_micros = 0;              //   of which gold
};
std::optional<JobDetail> load_job(pqxx::connection& c, std::int64_t team_id, const std::string& job_id);

// Keyset position in the team's job list (newest first).
struct ListPosition {
  std::int64_t created_at_micros = 0;  // since the Unix epoch
  std::string id;
};
struct ListedJob {
  JobRecord job;
  ListPosition position;
};
// Up to `limit` jobs strictly after `after`, newest first, optionally of one status.
std::vector<ListedJob> list_jobs(pqxx::connection& c, std::int64_t team_id, const std::optional<std::string>& status,
                                 const std::optional<ListPosition>& after, std::size_t limit);

struct Judgment {
  std::string vendor_id;
  std::string answer;
  std::string worker_id;  // empty: the vendor did not say
};
struct ItemResult {
  std::string item_id;
  std::string state;  // labeled or unlabeled
  std::optional<std::string> label;
  std::optional<double> confidence;
  std::string method;
  std::vector<Judgment> judgments;  // completed assignments, by vendor id
};
// Finished (labeled or unlabeled) non-gold items with item_id > `after`, by item_id; up to `limit`.
// nullopt: no such job for this team. Open items are not listed: they have no result yet.
std::optional<std::vector<ItemResult>> load_results(pqxx::connection& c, std::int64_t team_id,
                                                    const std::string& job_id, const std::string& after,
                                                    std::size_t limit);

}  // namespace labelbroker::db
