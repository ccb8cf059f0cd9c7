#include "api/dataset_routes.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <regex>

#include <nlohmann/json.hpp>

#include "api/auth.hpp"
#include "api/paging.hpp"
#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/strings.hpp"
#include "db/dataset_store.hpp"
#include "http/problem.hpp"

namespace labelbroker::api {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxSourceJobs = 1000;

bool valid_dataset_name(const std::string& name) {
  // Mirrors the CHECK on datasets.name; names appear in URLs unescaped.
  static const std::regex pattern("^[a-z0-9][a-z0-9._-]{0,127}$");
  return std::regex_match(name, pattern);
}

// The request as the store takes it, or every problem with its JSON Pointer.
std::vector<http::FieldError> parse_request(const json& body, db::DatasetRequest& out) {
  std::vector<http::FieldError> errors;
  if (!body.is_object()) return {{"", "must be an object"}};
  for (const auto& [key, value] : body.items())
    if (key != "name" && key != "jobs" && key != "min_confidence" && key != "include")
      errors.push_back({"/" + http::json_pointer_escape(key), "unknown field (name, jobs, min_confidence, include)"});
  if (!body.contains("name"))
    errors.push_back({"/name", "is required"});
  else if (!body["name"].is_string() || !valid_dataset_name(body["name"].get<std::string>()))
    errors.push_back({"/name", "must be 1-128 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"});
  else
    out.name = body["name"].get<std::string>();
  if (!body.contains("jobs") || !body["jobs"].is_array() || body["jobs"].empty() ||
      body["jobs"].size() > kMaxSourceJobs) {
    errors.push_back({"/jobs", "must be a list of 1 to " + std::to_string(kMaxSourceJobs) + " job ids"});
  } else {
    for (std::size_t i = 0; i < body["jobs"].size(); ++i) {
      const auto& id = body["jobs"][i];
      const auto pointer = "/jobs/" + std::to_string(i);
      if (!id.is_string() || !common::is_uuid(id.get<std::string>()))
        errors.push_back({pointer, "must be a job id"});
      else if (std::find(out.jobs.begin(), out.jobs.end(), id.get<std::string>()) != out.jobs.end())
        errors.push_back({pointer, "is listed twice"});
      else
        out.jobs.push_back(id.get<std::string>());
    }
  }
  if (body.contains("min_confidence")) {
    const auto& m = body["min_confidence"];
    if (!m.is_number() || !(m.get<double>() >= 0 && m.get<double>() <= 1))
      errors.push_back({"/min_confidence", "must be a number from 0 to 1"});
    else
      out.min_confidence = m.get<double>();
  }
  if (body.contains("include")) {
    const auto& inc = body["include"];
    if (!inc.is_array()) {
      errors.push_back({"/include", "must be a list of \"judgments\" and \"provenance\""});
    } else {
      for (std::size_t i = 0; i < inc.size(); ++i) {
        const auto pointer = "/include/" + std::to_string(i);
        if (!inc[i].is_string() || (inc[i] != "judgments" && inc[i] != "provenance"))
          errors.push_back({pointer, "must be \"judgments\" or \"provenance\""});
        else if (std::find(out.include.begin(), out.include.end(), inc[i].get<std::string>()) == out.include.end())
          out.include.push_back(inc[i].get<std::string>());
      }
      std::sort(out.include.begin(), out.include.end());
    }
  }
  return errors;
}

http::Response create(db::ConnectionPool& pool, http::Request& request, const Caller& caller) {
  db::DatasetRequest dataset;
  if (auto header = request.header("Idempotency-Key")) {
    if (!common::is_idempotency_key(*header))
      return bad_query("Idempotency-Key must be 1 to 255 visible ASCII characters");
    dataset.idempotency_key = std::string(*header);
  }
  const auto body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) return http::problem(400, "invalid-json", "Invalid JSON", "the body is not valid JSON");
  if (auto errors = parse_request(body, dataset); !errors.empty())
    return http::problem(422, "invalid-dataset", "Invalid dataset", "The dataset request is not valid.", errors);
  dataset.request_sha256 = common::sha256_hex(body.dump());
  const auto result = pool.run([&](pqxx::connection& c) { return db::create_dataset_version(c, caller.team_id, dataset); });
  switch (result.outcome) {
    case db::DatasetCreate::invalid_jobs: {
      std::vector<http::FieldError> errors;
      for (const auto& [index, why] : result.job_errors) errors.push_back({"/jobs/" + std::to_string(index), why});
      return http::problem(422, "invalid-dataset", "Invalid dataset",
                           "Only the team's own completed jobs can be exported.", errors);
    }
    case db::DatasetCreate::key_reused:
      return http::problem(422, "idempotency-key-reused", "Idempotency-Key reused",
                           "this Idempotency-Key was used for version " + std::to_string(result.version) +
                               " of dataset " + dataset.name + " with a different request");
    case db::DatasetCreate::created:
    case db::DatasetCreate::replayed:
      break;
  }
  auto response = http::Response::json(
      result.outcome == db::DatasetCreate::created ? 202 : 200,
      json{{"name", dataset.name}, {"version", result.version}, {"status", result.status}}.dump());
  response.headers.set("Location", "/v1/datasets/" + dataset.name + "/versions/" + std::to_string(result.version));
  return response;
}

// items.jsonl of a ready version, read from the database a piece at a time as the client takes it.
// A version's bytes [from, to) read from the database a piece at a time. Given a cache writer (a
// whole download in a process whose cache lacks the version), it also copies the bytes to the
// cache and keeps the file only when their SHA-256 is the manifest's, so the next download reads
// the file. A cache that fails to write is dropped; the download goes on.
class DatasetBody final : public http::BodySource {
 public:
  DatasetBody(db::ConnectionPool& pool, std::string version_id, std::uint64_t from, std::uint64_t to,
              std::unique_ptr<datasets::FileCache::Writer> fill = nullptr, std::string expected_sha256 = "")
      : pool_(pool),
        version_id_(std::move(version_id)),
        position_(from),
        to_(to),
        fill_(std::move(fill)),
        expected_sha256_(std::move(expected_sha256)) {}
  std::uint64_t length() const override { return to_ - position_ + sent_; }
  bool next(std::string& out, std::size_t max_bytes) override {
    auto piece = pool_.run([&](pqxx::connection& c) {
      return db::read_dataset_bytes(c, version_id_, position_, to_, max_bytes);
    });
    if (piece.empty() && position_ < to_) throw std::runtime_error("dataset bytes ended early");
    position_ += piece.size();
    sent_ += piece.size();
    if (fill_) copy_to_cache(piece);
    out += piece;
    return position_ < to_;
  }

 private:
  void copy_to_cache(std::string_view piece) {
    try {
      fill_->append(piece);
      hash_.update(piece);
      if (position_ < to_) return;
      if (hash_.hex() == expected_sha256_)
        fill_->finish();
      else
        common::log::warn("dataset file cache: the database's bytes do not match the manifest; not kept",
                          {{"version_id", version_id_}});
    } catch (const std::exception& e) {
      common::log::warn("dataset file cache: fill failed; serving from the database",
                        {{"version_id", version_id_}, {"error", e.what()}});
    }
    fill_.reset();  // finished, refused or failed: removes an unfinished file
  }

  db::ConnectionPool& pool_;
  std::string version_id_;
  std::uint64_t position_;
  std::uint64_t to_;
  std::uint64_t sent_ = 0;
  std::unique_ptr<datasets::FileCache::Writer> fill_;
  std::string expected_sha256_;
  common::Sha256 hash_;
};

// One byte range of `length` bytes from a Range header: [first, last + 1). nullopt: serve the
// whole file (no header, another unit, several ranges); unsatisfiable: 416.
struct ByteRange {
  std::uint64_t from = 0, to = 0;
  bool unsatisfiable = false;
};
std::optional<ByteRange> parse_range(std::string_view header, std::uint64_t length) {
  constexpr std::string_view kUnit = "bytes=";
  if (header.substr(0, kUnit.size()) != kUnit) return std::nullopt;
  const auto spec = header.substr(kUnit.size());
  if (spec.find(',') != std::string_view::npos) return std::nullopt;  // several ranges: send it all
  const auto dash = spec.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const auto number = common::parse_uint;
  const auto first = spec.substr(0, dash), last = spec.substr(dash + 1);
  ByteRange range;
  if (first.empty()) {  // the last N bytes
    const auto n = number(last);
    if (!n) return std::nullopt;
    if (*n == 0 || length == 0) return ByteRange{0, 0, true};
    range.from = length - std::min(*n, length);
    range.to = length;
    return range;
  }
  const auto a = number(first);
  if (!a) return std::nullopt;
  if (*a >= length) return ByteRange{0, 0, true};
  range.from = *a;
  range.to = length;
  if (!last.empty()) {
    const auto b = number(last);
    if (!b || *b < *a) return std::nullopt;
    range.to = std::min(*b + 1, length);
  }
  return range;
}

http::Response download(db::ConnectionPool& pool, const datasets::FileCache* files, http::Request& request,
                        const Caller& caller) {
  const std::string name(request.path_param("name"));
  const std::string version(request.path_param("version"));
  const auto file =
      pool.run([&](pqxx::connection& c) { return db::find_dataset_file(c, caller.team_id, name, version); });
  if (!file)
    return http::problem(404, "not-found", "Not found",
                         "no version \"" + version + "\" of dataset \"" + name + "\"");
  if (file->status != "ready")
    return http::problem(409, "dataset-not-ready", "Dataset not ready",
                         "version " + version + " of dataset \"" + name + "\" is " + file->status + "; try again later");
  const std::string etag = "\"" + file->sha256 + "\"";
  auto headers = [&](http::Response& r) {
    r.headers.set("ETag", etag);
    r.headers.set("Accept-Ranges", "bytes");
    r.headers.set("Cache-Control", "private, max-age=31536000, immutable");
    r.headers.set("Content-Type", "application/x-ndjson");
  };
  if (http::if_none_match(request, etag)) {
    http::Response r;
    r.status = 304;
    headers(r);
    return r;
  }
  std::uint64_t from = 0, to = file->bytes;
  int status = 200;
  const auto if_range = request.header("If-Range");
  if (auto range_header = request.header("Range"); range_header && (!if_range || *if_range == etag)) {
    if (auto range = parse_range(*range_header, file->bytes)) {
      if (range->unsatisfiable) {
        auto r = http::problem(416, "range-not-satisfiable", "Range not satisfiable",
                               "the file has " + std::to_string(file->bytes) + " bytes");
        r.headers.set("Content-Range", "bytes */" + std::to_string(file->bytes));
        return r;
      }
      from = range->from;
      to = range->to;
      status = 206;
    }
  }
  http::Response r;
  r.status = status;
  headers(r);
  if (status == 206)
    r.headers.set("Content-Range", "bytes " + std::to_string(from) + "-" + std::to_string(to - 1) + "/" +
                                       std::to_string(file->bytes));
  if (files) r.source = files->open(file->version_id, file->bytes, from, to);
  if (!r.source) {
    // Not on local disk: a whole download fills the cache on the way (ranges do not).
    auto fill = files && from == 0 && to == file->bytes ? files->start(file->version_id) : nullptr;
    r.source = std::make_shared<DatasetBody>(pool, file->version_id, from, to, std::move(fill), file->sha256);
  }
  return r;
}

}  // namespace

void register_dataset_routes(http::Router& router, db::ConnectionPool& pool, const datasets::FileCache* files) {
  router.add("POST", "/v1/datasets",
             require_role(pool, auth::Role::submitter, [&pool](http::Request& request, const Caller& caller) {
               return create(pool, request, caller);
             }));
  router.add("GET", "/v1/datasets", require_role(pool, auth::Role::viewer, [&pool](http::Request&, const Caller& caller) {
               const auto list = pool.run([&](pqxx::connection& c) { return db::list_datasets(c, caller.team_id); });
               return http::Response::json(200, json{{"datasets", list}}.dump());
             }));
  router.add("GET", "/v1/datasets/{name}/versions/{version}/items.jsonl",
             require_role(pool, auth::Role::viewer, [&pool, files](http::Request& request, const Caller& caller) {
               return download(pool, files, request, caller);
             }));
  router.add("GET", "/v1/datasets/{name}/versions/{version}",
             require_role(pool, auth::Role::viewer, [&pool](http::Request& request, const Caller& caller) {
               const std::string name(request.path_param("name"));
               const std::string version(request.path_param("version"));
               const auto manifest = pool.run(
                   [&](pqxx::connection& c) { return db::load_dataset_manifest(c, caller.team_id, name, version); });
               if (!manifest)
                 return http::problem(404, "not-found", "Not found",
                                      version == "latest"
                                          ? "dataset \"" + name + "\" has no ready version (or does not exist)"
                                          : "no version \"" + version + "\" of dataset \"" + name + "\"");
               return http::Response::json(200, manifest->dump());
             }));
}

}  // namespace labelbroker::api
