#pragma once
// Datasets in PostgreSQL (schema/0006_datasets.sql): versions created by a team from its completed
// jobs, materialised by a builder into immutable JSONL lines, and their manifests.
//
// A version's bytes are its lines in `seq` order, each followed by "\n". Lines are built in SQL
// from jsonb, whose text form has one key order for equal values, so a version hashes the same
// whenever it is read.
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <pqxx/connection>

namespace labelbroker::db {

struct DatasetRequest {
  std::string name;
  std::vector<std::string> jobs;  // UUIDs, in the order their items appear
  double min_confidence = 0;
  std::vector<std::string> include;  // "judgments", "provenance"
  std::optional<std::string> idempotency_key;
  std::string request_sha256;
};

enum class DatasetCreate { created, replayed, key_reused, invalid_jobs };

struct DatasetCreateResult {
  DatasetCreate outcome = DatasetCreate::created;
  int version = 0;
  std::string status;  // of the version (created or replayed)
  // invalid_jobs: per offending index of `jobs`, why ("no job with this id", "job is running ...").
  std::vector<std::pair<std::size_t, std::string>> job_errors;
};

// Checks that every job is the team's and completed, then creates the next version of the
// team's dataset `name` (the dataset too, if new) as `building`, all in one transaction. The
// same Idempotency-Key with the same request replays the version; with another request it is
// refused.
DatasetCreateResult create_dataset_version(pqxx::connection& c, std::int64_t team_id, const DatasetRequest& request);

// Where a version's lines also go while it is built (a local file cache): every line in order,
// then finish() just before the version turns ready. Either may be empty.
struct BuildSink {
  std::function<void(std::string_view line)> line;
  std::function<void()> finish;
};
using OpenBuildSink = std::function<BuildSink(const std::string& version_id)>;

// Claims one building version (SKIP LOCKED) and materialises it: its lines, counts, label counts,
// vendor mix, bytes and sha256, then `ready`. Returns whether there was one.
bool build_next_dataset_version(pqxx::connection& c, const OpenBuildSink& open_sink = {});

// version: a number, or "latest" (the newest ready one). nullopt: no such dataset or version for
// the team (another team's look the same).
std::optional<nlohmann::json> load_dataset_manifest(pqxx::connection& c, std::int64_t team_id,
                                                   const std::string& name, const std::string& version);

// A version's items.jsonl for download. status "building"/"failed": not downloadable yet.
struct ReadyFile {
  std::string status;
  std::string version_id;
  int version = 0;
  std::uint64_t bytes = 0;
  std::string sha256;
};
std::optional<ReadyFile> find_dataset_file(pqxx::connection& c, std::int64_t team_id, const std::string& name,
                                           const std::string& version);

// Bytes [from, to) of a ready version's items.jsonl, at most about `max_bytes` of them (whole lines
// but the edges), starting at `from`: call again from where it ended. Empty at the end.
std::string read_dataset_bytes(pqxx::connection& c, const std::string& version_id, std::uint64_t from,
                               std::uint64_t to, std::size_t max_bytes);

// The team's datasets with their versions: [{name, created_at, latest_ready, versions: [{version,
// status, item_count, created_at}]}], by name.
nlohmann::json list_datasets(pqxx::connection& c, std::int64_t team_id);

}  // namespace labelbroker::db
