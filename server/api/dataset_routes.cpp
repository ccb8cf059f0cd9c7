#include "api/dataset_routes.hpp"

#include <algorithm>
#include <regex>

#include <nlohmann/json.hpp>

#include "api/auth.hpp"
#include "common/crypto.hpp"
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
    const bool printable = std::all_of(header->begin(), header->end(), [](char c) { return c > 0x20 && c < 0x7F; });
    if (header->empty() || header->size() > 255 || !printable)
      return http::problem(400, "bad-query", "Bad query parameter",
                           "Idempotency-Key must be 1 to 255 visible ASCII characters");
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

}  // namespace

void register_dataset_routes(http::Router& router, db::ConnectionPool& pool) {
  router.add("POST", "/v1/datasets",
             require_role(pool, auth::Role::submitter, [&pool](http::Request& request, const Caller& caller) {
               return create(pool, request, caller);
             }));
  router.add("GET", "/v1/datasets", require_role(pool, auth::Role::viewer, [&pool](http::Request&, const Caller& caller) {
               const auto list = pool.run([&](pqxx::connection& c) { return db::list_datasets(c, caller.team_id); });
               return http::Response::json(200, json{{"datasets", list}}.dump());
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
