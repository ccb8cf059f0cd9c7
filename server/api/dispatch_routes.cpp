#include "api/dispatch_routes.hpp"

#include <limits>

#include <nlohmann/json.hpp>

#include "api/auth.hpp"
#include "api/paging.hpp"
#include "common/log.hpp"
#include "common/money.hpp"
#include "common/strings.hpp"
#include "db/routing_store.hpp"
#include "http/problem.hpp"

namespace labelbroker::api {
namespace {

// A positive decimal integer query value that fits a bigint; nullopt when malformed.
std::optional<std::int64_t> positive_integer(std::string_view text) {
  const auto value = common::parse_uint(text);
  if (!value || *value < 1 || *value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
  return static_cast<std::int64_t>(*value);
}

// Vendors call back here when a task is done. The adapter checks the vendor's authentication
// (shared secret, HMAC or URL token) and parses the vendor's format; the results are committed
// before the 200, so a vendor that sees 200 may forget the callback, and one that does not will
// send it again, which changes nothing.
http::Response vendor_callback(jobs::Dispatch& dispatch, http::Request& request) {
  const std::string vendor_id(request.path_param("vendor_id"));
  auto* adapter = dispatch.vendors().find(vendor_id);
  if (!adapter) return http::problem(404, "not-found", "Not found", "no vendor with this id");

  vendors::InboundCallback callback;
  callback.headers = request.headers.all();
  callback.query = request.query;
  callback.body = request.body;
  std::vector<vendors::UnitResult> results;
  try {
    results = adapter->parse_callback(callback);
  } catch (const vendors::CallbackRejected& e) {
    common::log::warn("vendor callback rejected", {{"vendor", vendor_id}, {"reason", e.what()}});
    return http::problem(401, "unauthorized", "Unauthorized", "the callback's authentication is missing or wrong");
  } catch (const vendors::VendorError& e) {
    return http::problem(400, "bad-callback", "Bad callback", e.what());
  }
  auto summary = dispatch.ingest(vendor_id, results);
  return http::Response::json(200, nlohmann::json{{"recorded", summary.recorded}, {"ignored", summary.ignored}}.dump());
}

// PATCH /v1/jobs/{id}: {"budget_usd": "..."}, the one mutable property of a submitted job.
http::Response patch_job(jobs::Dispatch& dispatch, http::Request& request, const Caller& caller) {
  const std::string job_id(request.path_param("id"));
  auto body = nlohmann::json::parse(request.body, nullptr, false);
  if (body.is_discarded())
    return http::problem(400, "invalid-json", "Invalid JSON", "the body is not valid JSON");
  std::vector<http::FieldError> errors;
  std::optional<std::int64_t> budget;
  if (!body.is_object()) {
    errors.push_back({"", "must be an object"});
  } else {
    for (const auto& [key, value] : body.items())
      if (key != "budget_usd") errors.push_back({"/" + http::json_pointer_escape(key), "unknown or read-only field"});
    if (!body.contains("budget_usd")) {
      errors.push_back({"/budget_usd", "is required"});
    } else if (!body["budget_usd"].is_string() ||
               !(budget = common::parse_usd_micros(body["budget_usd"].get<std::string>()))) {
      errors.push_back({"/budget_usd", "must be a decimal amount of US dollars as a string, e.g. \"250.00\""});
    }
  }
  if (!errors.empty()) return http::problem(422, "invalid-job", "Invalid job", "The change is not valid.", errors);
  const auto result = dispatch.set_budget(caller.team_id, job_id, *budget);
  switch (result.change) {
    case db::BudgetChange::not_found:
      return http::problem(404, "not-found", "Not found", "no job with this id");
    case db::BudgetChange::finished:
      return http::problem(409, "job-finished", "Job already finished", "a finished job's budget cannot change");
    case db::BudgetChange::changed:
    case db::BudgetChange::resumed:
      break;
  }
  return http::Response::json(200, nlohmann::json{{"id", job_id},
                                                  {"status", result.job_status},
                                                  {"budget_usd", common::format_usd(*budget)},
                                                  {"resumed", result.change == db::BudgetChange::resumed}}
                                       .dump());
}

// GET /v1/jobs/{id}/routing: the job's routing decisions, newest first, a page at a time.
http::Response routing_log(db::ConnectionPool& pool, http::Request& request, const Caller& caller) {
  const std::string job_id(request.path_param("id"));
  if (!common::is_uuid(job_id)) return http::problem(404, "not-found", "Not found", "no job with this id");
  const auto limit = page_size(request, 50, 500);
  if (!limit) return bad_query("limit must be an integer from 1 to 500");
  std::optional<std::int64_t> before;
  if (auto text = request.query_param("cursor")) {
    const auto n = positive_integer(*text);
    if (!n) return bad_query("cursor must be a next_cursor of an earlier page");
    before = *n;
  }
  if (auto bad = reject_unknown_params(request, {"limit", "cursor"})) return *bad;
  const auto page = pool.run(
      [&](pqxx::connection& c) { return db::list_routing_decisions(c, caller.team_id, job_id, before, static_cast<int>(*limit)); });
  if (!page.job_found) return http::problem(404, "not-found", "Not found", "no job with this id");
  nlohmann::json decisions = nlohmann::json::array();
  for (const auto& d : page.decisions) {
    nlohmann::json entry = {{"id", d.id}, {"at", d.created_at}, {"kind", d.kind}, {"items", d.items}};
    entry["decision"] = d.decision;
    decisions.push_back(std::move(entry));
  }
  nlohmann::json body = {{"job_id", job_id},
                         {"total", page.total},
                         {"cap_unsatisfiable", page.cap_unsatisfiable},
                         {"decisions", decisions}};
  body["next_cursor"] = page.next_before ? nlohmann::json(std::to_string(*page.next_before)) : nlohmann::json(nullptr);
  return http::Response::json(200, body.dump());
}

}  // namespace

void register_dispatch_routes(http::Router& router, db::ConnectionPool& pool, jobs::Dispatch& dispatch) {
  router.add("POST", "/v1/callbacks/{vendor_id}",
             [&dispatch](http::Request& request) { return vendor_callback(dispatch, request); });

  router.add("PATCH", "/v1/jobs/{id}",
             require_role(pool, auth::Role::submitter, [&dispatch](http::Request& request, const Caller& caller) {
               return patch_job(dispatch, request, caller);
             }));
  router.add("GET", "/v1/jobs/{id}/routing",
             require_role(pool, auth::Role::viewer, [&pool](http::Request& request, const Caller& caller) {
               return routing_log(pool, request, caller);
             }));
  router.add("POST", "/v1/jobs/{id}/cancel",
             require_role(pool, auth::Role::submitter, [&dispatch](http::Request& request, const Caller& caller) {
               const std::string job_id(request.path_param("id"));
               auto result = dispatch.cancel(caller.team_id, job_id);
               switch (result.status) {
                 case db::CancelStatus::not_found:
                   return http::problem(404, "not-found", "Not found", "no job with this id");
                 case db::CancelStatus::already_finished:
                   return http::problem(409, "job-finished", "Job already finished",
                                        "the job ended as " + result.job_status + " and cannot be canceled");
                 case db::CancelStatus::canceled:
                   break;
               }
               return http::Response::json(
                   200, nlohmann::json{{"id", job_id}, {"status", result.job_status}}.dump());
             }));
}

}  // namespace labelbroker::api
