#include "api/job_routes.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <memory>
#include <variant>

#include <nlohmann/json.hpp>

#include "api/auth.hpp"
#include "api/paging.hpp"
#include "common/strings.hpp"
#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/money.hpp"
#include "common/time.hpp"
#include "db/gold_store.hpp"
#include "db/job_store.hpp"
#include "http/problem.hpp"
#include "jobs/job_spec.hpp"

namespace labelbroker::api {
namespace {

using nlohmann::json;

constexpr std::size_t kDefaultPageSize = 50;
constexpr std::size_t kMaxListPageSize = 500;
constexpr std::size_t kDefaultResultsPageSize = 1000;
constexpr std::size_t kMaxResultsPageSize = 10000;

// ---- request bodies ------------------------------------------------------------------------

// The parsed body, or the 400 problem to answer.
std::variant<json, http::Response> parse_body(std::string_view body) {
  auto parsed = jobs::parse_document(body);
  if (parsed.problem.empty()) return std::move(parsed.document);
  return http::problem(400, "invalid-json", "Invalid JSON", parsed.problem);
}

http::Response validation_problem(std::string detail, std::vector<http::FieldError> errors) {
  return http::problem(422, "invalid-job", "Invalid job", detail, errors);
}

http::Response not_found(const http::Request& request) {
  return http::problem(404, "not-found", "Not found", "no resource at " + request.path);
}

// ---- ids, cursors, query parameters --------------------------------------------------------

using common::is_uuid;

// ---- JSON views ----------------------------------------------------------------------------

json optional_time(const std::optional<std::chrono::system_clock::time_point>& t) {
  return t ? json(common::format_rfc3339(*t, true)) : json(nullptr);
}

json or_null(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

json job_summary(const db::JobRecord& j) {
  return {
      {"id", j.id},
      {"name", j.name},
      {"status", j.status},
      {"task_type", j.task_type},
      {"domain", j.domain},
      {"expertise", j.expertise},
      {"redundancy", j.redundancy},
      {"budget_usd", common::format_usd(j.budget_micros)},
      {"deadline", common::format_rfc3339(j.deadline)},
      {"created_at", common::format_rfc3339(j.created_at, true)},
      {"started_at", optional_time(j.started_at)},
      {"finished_at", optional_time(j.finished_at)},
      {"end_reason", or_null(j.end_reason)},
      {"counts", {{"items", j.item_count}, {"gold", j.gold_count}}},
  };
}

constexpr const char* kAssignmentStates[] = {"queued",    "paused", "sending", "submitted",
                                             "completed", "failed", "canceled"};

json job_detail(const db::JobDetail& d) {
  const auto& j = d.job;
  json out = job_summary(j);
  out["labels"] = j.labels;
  out["quality"] = {{"min_vendor_accuracy", j.min_vendor_accuracy ? json(*j.min_vendor_accuracy) : json(nullptr)}};
  out["optimize"] = j.optimize;
  out["callback_url"] = or_null(j.callback_url);
  out["vendors"] = {{"allow", j.allow_vendors}, {"deny", j.deny_vendors}};
  out["eligible_vendors"] = j.eligible_vendors;
  out["counts"] = {{"items", j.item_count},
                   {"gold", j.gold_count},
                   {"open", d.open},
                   {"labeled", d.labeled},
                   {"unlabeled", d.unlabeled}};
  json assignments = json::object();
  for (const char* state : kAssignmentStates) {
    auto it = d.assignments.find(state);
    assignments[state] = it == d.assignments.end() ? 0 : it->second;
  }
  out["assignments"] = assignments;
  json per_vendor = json::array();
  std::int64_t spend = 0;
  for (const auto& v : d.per_vendor) {
    json entry = {{"vendor", v.vendor_id}};
    for (const char* state : kAssignmentStates) {
      auto it = v.assignments.find(state);
      entry[state] = it == v.assignments.end() ? 0 : it->second;
    }
    entry["spend_usd"] = common::format_usd(v.spend_micros);
    entry["quoted_usd"] = common::format_usd(v.quoted_micros);
    spend += v.spend_micros;
    per_vendor.push_back(std::move(entry));
  }
  out["per_vendor"] = per_vendor;
  out["spend_usd"] = common::format_usd(spend);
  out["gold_set"] = j.gold_set_id ? json(*j.gold_set_id) : json(nullptr);
  out["budget"] = {{"budget_usd", common::format_usd(j.budget_micros)},
                   {"held_usd", common::format_usd(d.held_micros)},
                   {"spent_usd", common::format_usd(d.spent_micros)},
                   {"remaining_usd", common::format_usd(std::max<std::int64_t>(
                                         0, j.budget_micros - d.held_micros - d.spent_micros))},
                   {"qa_overhead_usd", common::format_usd(d.qa_overhead_micros)},
                   {"reason", j.budget_reason ? json(*j.budget_reason) : json(nullptr)}};
  return out;
}

http::Response job_response(int status, const db::JobDetail& detail) {
  http::Response r = http::Response::json(status, job_detail(detail).dump());
  r.headers.set("Location", "/v1/jobs/" + detail.job.id);
  return r;
}

// What validation knows about the configured vendors.
std::vector<jobs::VendorView> vendor_views(const vendors::VendorSet& set) {
  std::vector<jobs::VendorView> out;
  for (const auto& adapter : set.all()) out.push_back({adapter->id(), adapter->capabilities(), true});
  return out;
}

// Items of a parsed request as the store takes them (pointers into the parsed lists).
template <typename Items, typename Gold>
std::vector<db::ItemRef> item_refs(const Items& items, const Gold& gold) {
  std::vector<db::ItemRef> refs;
  refs.reserve(items.size() + gold.size());
  for (const auto& i : items) refs.push_back({&i.id, &i.data, nullptr});
  for (const auto& g : gold) refs.push_back({&g.id, &g.data, &g.answer});
  return refs;
}

// ---- handlers ------------------------------------------------------------------------------

class JobRoutes {
 public:
  JobRoutes(db::ConnectionPool& pool, const vendors::VendorSet& vendors, const config::JobsConfig& limits)
      : pool_(pool), vendors_(vendors), limits_(limits) {}

  http::Response create(http::Request& request, const Caller& caller) {
    std::optional<std::string> key;
    if (auto header = request.header("Idempotency-Key")) {
      if (!common::is_idempotency_key(*header))
        return bad_query("Idempotency-Key must be 1 to 255 visible ASCII characters");
      key = std::string(*header);
    }
    bool draft = false;
    if (auto d = request.query_param("draft")) {
      if (*d != "true" && *d != "false") return bad_query("draft must be true or false");
      draft = *d == "true";
    }
    std::string sha;
    if (key) {
      // A replay is answered before the (possibly large) body is parsed.
      sha = common::sha256_hex(request.body);
      auto existing = pool_.run([&](pqxx::connection& c) { return db::find_job_by_idempotency_key(c, caller.team_id, *key); });
      if (existing) return replay(request, caller, existing->job_id, existing->request_sha256 == sha);
    }

    using Clock = std::chrono::steady_clock;
    const auto t_parse = Clock::now();
    auto parsed = parse_body(request.body);
    if (auto* problem = std::get_if<http::Response>(&parsed)) return std::move(*problem);
    std::string().swap(request.body);  // the document holds everything now; free the text
    const auto t_validate = Clock::now();

    jobs::ValidationLimits limits;
    limits.max_items = limits_.max_items_per_request;
    limits.allow_no_items = draft;
    auto find_gold_set = [&](const std::string& id) -> std::optional<jobs::GoldSetView> {
      auto set = pool_.run([&](pqxx::connection& c) { return db::load_gold_set(c, caller.team_id, id); });
      if (!set) return std::nullopt;
      return jobs::GoldSetView{set->id, set->task_type, set->labels, static_cast<std::size_t>(set->item_count)};
    };
    auto result = jobs::parse_job(std::move(std::get<json>(parsed)), vendor_views(vendors_),
                                  std::chrono::system_clock::now(), limits, find_gold_set);
    parsed = json();  // the items' data moved into `result`; free the rest of the document now
    if (!result.job) {
      return validation_problem(std::to_string(result.errors.size()) + " problem(s) with the job; see errors",
                                std::move(result.errors));
    }
    const auto& spec = *result.job;
    const std::size_t set_items = spec.gold_set ? spec.gold_set->item_count : 0;
    if (spec.items.size() + spec.gold.size() + set_items > limits_.max_items_per_job) {
      return validation_problem("the job is too large",
                                {{"/items", "a job may have at most " + std::to_string(limits_.max_items_per_job) +
                                                " items and gold items together, its gold set's included"}});
    }

    db::NewJob job;
    job.team_id = caller.team_id;
    job.draft = draft;
    job.name = spec.name;
    job.task_type = std::string(vendors::to_string(spec.task_type));
    job.domain = spec.domain;
    job.expertise = std::string(vendors::to_string(spec.expertise));
    job.instructions = spec.instructions;
    job.labels = spec.labels;
    job.redundancy = spec.redundancy;
    job.min_vendor_accuracy = spec.min_vendor_accuracy;
    job.budget_micros = spec.budget_micros;
    job.deadline = spec.deadline;
    job.allow_vendors = spec.allow;
    job.deny_vendors = spec.deny;
    job.eligible_vendors = spec.eligible_vendors;
    job.optimize = routing::to_string(spec.optimize);
    job.callback_url = spec.callback_url;
    job.idempotency_key = key;
    job.request_sha256 = sha;
    if (spec.gold_set) {
      job.gold_set_id = spec.gold_set->id;
      job.gold_set_item_prefix = std::string(jobs::kGoldSetItemPrefix);
    }
    const auto refs = item_refs(spec.items, spec.gold);
    const auto t_store = Clock::now();
    auto created = pool_.run([&](pqxx::connection& c) { return db::create_job(c, job, refs); });
    if (common::log::enabled(common::log::Level::debug)) {
      // Where intake time goes (bench/ingest.sh): parse, validate, store (INSERT + COPY + commit).
      auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
      common::log::debug("job intake", {{"job_id", created.job_id},
                                        {"items", refs.size()},
                                        {"parse_ms", ms(t_validate - t_parse)},
                                        {"validate_ms", ms(t_store - t_validate)},
                                        {"store_ms", ms(Clock::now() - t_store)}});
    }
    switch (created.outcome) {
      case db::CreateOutcome::created:
        break;
      case db::CreateOutcome::replayed:
        return replay(request, caller, created.job_id, true);
      case db::CreateOutcome::key_reused:
        return replay(request, caller, created.job_id, false);
    }
    auto detail = load(caller, created.job_id);
    if (!detail) throw std::runtime_error("job " + created.job_id + " vanished right after it was created");
    return job_response(201, *detail);
  }

  http::Response append(http::Request& request, const Caller& caller) {
    const std::string id(request.path_param("id"));
    if (!is_uuid(id)) return not_found(request);
    auto header = pool_.run([&](pqxx::connection& c) { return db::load_job_header(c, caller.team_id, id); });
    if (!header) return not_found(request);
    if (header->status != "draft") return not_draft(id, header->status);

    auto parsed = parse_body(request.body);
    if (auto* problem = std::get_if<http::Response>(&parsed)) return std::move(*problem);
    std::string().swap(request.body);
    jobs::ValidationLimits limits;
    limits.max_items = limits_.max_items_per_request;
    auto result = jobs::parse_items(std::move(std::get<json>(parsed)), header->labels, limits);
    parsed = json();
    if (!result.errors.empty()) {
      return validation_problem(std::to_string(result.errors.size()) + " problem(s) with the items; see errors",
                                std::move(result.errors));
    }
    const auto refs = item_refs(result.items, result.gold);
    auto appended = pool_.run(
        [&](pqxx::connection& c) { return db::append_items(c, caller.team_id, id, refs, limits_.max_items_per_job); });
    switch (appended.outcome) {
      case db::AppendOutcome::appended:
        break;
      case db::AppendOutcome::not_found:
        return not_found(request);
      case db::AppendOutcome::not_draft:
        return not_draft(id, "no longer a draft");
      case db::AppendOutcome::too_many:
        return validation_problem("the job would be too large",
                                  {{"/items", "a job may have at most " + std::to_string(limits_.max_items_per_job) +
                                                  " items and gold items together; it has " +
                                                  std::to_string(appended.item_count + appended.gold_count)}});
      case db::AppendOutcome::duplicate_ids: {
        // Point at each offending entry of this request.
        std::vector<http::FieldError> errors;
        auto mark = [&](const auto& list, const char* name) {
          for (std::size_t i = 0; i < list.size(); ++i) {
            if (std::find(appended.duplicate_ids.begin(), appended.duplicate_ids.end(), list[i].id) !=
                appended.duplicate_ids.end())
              errors.push_back({"/" + std::string(name) + "/" + std::to_string(i) + "/id",
                                "the job already has an item '" + list[i].id + "'"});
          }
        };
        mark(result.items, "items");
        mark(result.gold, "gold");
        return http::problem(409, "duplicate-items", "Duplicate item ids",
                             "some item ids are already in the job; nothing was appended", errors);
      }
    }
    return http::Response::json(200, json{{"id", id},
                                          {"status", "draft"},
                                          {"appended", {{"items", result.items.size()}, {"gold", result.gold.size()}}},
                                          {"counts", {{"items", appended.item_count}, {"gold", appended.gold_count}}}}
                                         .dump());
  }

  http::Response start(http::Request& request, const Caller& caller) {
    const std::string id(request.path_param("id"));
    if (!is_uuid(id)) return not_found(request);
    auto outcome = pool_.run([&](pqxx::connection& c) { return db::start_job(c, caller.team_id, id); });
    switch (outcome) {
      case db::StartOutcome::started:
        break;
      case db::StartOutcome::not_found:
        return not_found(request);
      case db::StartOutcome::not_draft:
        return not_draft(id, "not a draft");
      case db::StartOutcome::no_items:
        return validation_problem("the job has no items", {{"/items", "append items before starting the job"}});
    }
    auto detail = load(caller, id);
    if (!detail) return not_found(request);
    return job_response(200, *detail);
  }

  http::Response get(http::Request& request, const Caller& caller) {
    const std::string id(request.path_param("id"));
    if (!is_uuid(id)) return not_found(request);
    auto detail = load(caller, id);
    if (!detail) return not_found(request);
    http::Response r = http::Response::json(200, job_detail(*detail).dump());
    return r;
  }

  http::Response list(http::Request& request, const Caller& caller) {
    auto limit = page_size(request, kDefaultPageSize, kMaxListPageSize);
    if (!limit) return bad_query("limit must be an integer from 1 to " + std::to_string(kMaxListPageSize));
    std::optional<std::string> status;
    if (auto s = request.query_param("status")) {
      if (!db::is_job_status(*s))
        return bad_query("status must be one of draft, queued, running, completed, failed, canceled, "
                         "budget_exhausted");
      status = std::string(*s);
    }
    std::optional<db::ListPosition> after;
    if (auto c = request.query_param("cursor")) {
      // "<created_at micros>.<uuid>"
      auto raw = decode_cursor(*c);
      auto dot = raw ? raw->find('.') : std::string::npos;
      std::int64_t micros = 0;
      if (dot != std::string::npos) {
        auto [end, ec] = std::from_chars(raw->data(), raw->data() + dot, micros);
        if (ec != std::errc() || end != raw->data() + dot || !is_uuid(std::string_view(*raw).substr(dot + 1)))
          dot = std::string::npos;
      }
      if (dot == std::string::npos) return bad_query("cursor is not one this API returned");
      after = db::ListPosition{micros, raw->substr(dot + 1)};
    }
    auto rows = pool_.run(
        [&](pqxx::connection& c) { return db::list_jobs(c, caller.team_id, status, after, *limit + 1); });
    json jobs_json = json::array();
    json next = nullptr;
    for (std::size_t i = 0; i < rows.size() && i < *limit; ++i) jobs_json.push_back(job_summary(rows[i].job));
    if (rows.size() > *limit) {
      const auto& last = rows[*limit - 1].position;
      next = encode_cursor(std::to_string(last.created_at_micros) + "." + last.id);
    }
    return http::Response::json(200, json{{"jobs", jobs_json}, {"next_cursor", next}}.dump());
  }

  http::Response results(http::Request& request, const Caller& caller) {
    const std::string id(request.path_param("id"));
    if (!is_uuid(id)) return not_found(request);
    auto limit = page_size(request, kDefaultResultsPageSize, kMaxResultsPageSize);
    if (!limit) return bad_query("limit must be an integer from 1 to " + std::to_string(kMaxResultsPageSize));
    bool jsonl = false;
    if (auto f = request.query_param("format")) {
      if (*f != "json" && *f != "jsonl") return bad_query("format must be json or jsonl");
      jsonl = *f == "jsonl";
    } else if (auto accept = request.header("Accept")) {
      jsonl = accept->find("application/x-ndjson") != std::string_view::npos;
    }
    std::string after;
    if (auto c = request.query_param("cursor")) {
      auto raw = decode_cursor(*c);
      if (!raw || raw->empty()) return bad_query("cursor is not one this API returned");
      after = std::move(*raw);
    }
    auto page = pool_.run(
        [&](pqxx::connection& c) { return db::load_results(c, caller.team_id, id, after, *limit + 1); });
    if (!page) return not_found(request);
    const bool more = page->size() > *limit;
    if (more) page->resize(*limit);
    std::optional<std::string> next;
    if (more) next = encode_cursor(page->back().item_id);

    auto item_json = [](const db::ItemResult& r) {
      json judgments = json::array();
      for (const auto& j : r.judgments)
        judgments.push_back({{"vendor", j.vendor_id}, {"label", j.answer}, {"worker", or_null(j.worker_id)}});
      return json{{"item_id", r.item_id},
                  {"label", r.label ? json(*r.label) : json(nullptr)},
                  {"confidence", r.confidence ? json(*r.confidence) : json(nullptr)},
                  {"method", or_null(r.method)},
                  {"judgments", judgments}};
    };
    if (!jsonl) {
      json list = json::array();
      for (const auto& r : *page) list.push_back(item_json(r));
      return http::Response::json(200, json{{"results", list}, {"next_cursor", next ? json(*next) : json(nullptr)}}.dump());
    }
    std::string body;
    for (const auto& r : *page) {
      body += item_json(r).dump();
      body += '\n';
    }
    http::Response response = http::Response::text(200, std::move(body), "application/x-ndjson");
    if (next) {
      std::string link = "/v1/jobs/" + id + "/results?limit=" + std::to_string(*limit) + "&cursor=" + *next;
      if (request.query_param("format")) link += "&format=jsonl";
      response.headers.set("Link", "<" + link + ">; rel=\"next\"");
    }
    return response;
  }

 private:
  std::optional<db::JobDetail> load(const Caller& caller, const std::string& id) {
    return pool_.run([&](pqxx::connection& c) { return db::load_job(c, caller.team_id, id); });
  }

  // The answer to a request whose Idempotency-Key names an existing job.
  http::Response replay(const http::Request& request, const Caller& caller, const std::string& job_id,
                        bool same_body) {
    if (!same_body) {
      return http::problem(422, "idempotency-key-reused", "Idempotency-Key reused",
                           "this Idempotency-Key was used for job " + job_id +
                               " with a different request body; use a new key for a new job");
    }
    auto detail = load(caller, job_id);
    if (!detail) return not_found(request);
    return job_response(200, *detail);
  }

  static http::Response not_draft(const std::string& id, const std::string& status) {
    return http::problem(409, "job-not-draft", "Job is not a draft",
                         "job " + id + " is " + status + "; items can be added, and a job started, only while it is a draft");
  }

  db::ConnectionPool& pool_;
  const vendors::VendorSet& vendors_;
  config::JobsConfig limits_;
};

}  // namespace

void register_job_routes(http::Router& router, db::ConnectionPool& pool, const vendors::VendorSet& vendors,
                         const config::JobsConfig& limits) {
  auto routes = std::make_shared<JobRoutes>(pool, vendors, limits);
  // Only the two upload routes take large bodies; the rest keep the server's limit.
  const http::RouteOptions upload{http::Execution::worker, limits.body_limit_bytes, {}};
  auto bind = [&](auto method, auth::Role role) {
    return require_role(pool, role, [routes, method](http::Request& r, const Caller& c) { return ((*routes).*method)(r, c); });
  };
  router.add("POST", "/v1/jobs", bind(&JobRoutes::create, auth::Role::submitter), upload);
  router.add("GET", "/v1/jobs", bind(&JobRoutes::list, auth::Role::viewer));
  router.add("GET", "/v1/jobs/{id}", bind(&JobRoutes::get, auth::Role::viewer));
  router.add("POST", "/v1/jobs/{id}/items", bind(&JobRoutes::append, auth::Role::submitter), upload);
  router.add("POST", "/v1/jobs/{id}/start", bind(&JobRoutes::start, auth::Role::submitter));
  router.add("GET", "/v1/jobs/{id}/results", bind(&JobRoutes::results, auth::Role::viewer));
}

}  // namespace labelbroker::api
