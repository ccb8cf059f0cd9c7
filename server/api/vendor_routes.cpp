#include "api/vendor_routes.hpp"

#include "api/auth.hpp"
#include "http/problem.hpp"

#include <nlohmann/json.hpp>

namespace labelbroker::api {
namespace {

nlohmann::json vendor_json(const vendors::VendorAdapter& adapter, jobs::VendorBook& book) {
  const auto& caps = adapter.capabilities();
  nlohmann::json task_types = nlohmann::json::array(), expertise = nlohmann::json::array();
  for (auto t : caps.task_types) task_types.push_back(std::string(vendors::to_string(t)));
  for (auto e : caps.expertise) expertise.push_back(std::string(vendors::to_string(e)));
  const auto [enabled, weight] = book.effective(adapter.id());
  return {
      {"id", adapter.id()},
      {"kind", std::string(adapter.kind())},
      {"enabled", enabled},
      {"weight", weight},
      {"draining", !enabled || weight <= 0},
      {"capabilities",
       {{"task_types", task_types},
        {"domains", caps.domains},
        {"expertise", expertise},
        {"max_batch_size", caps.max_batch_size},
        {"max_in_flight", caps.max_in_flight}}},
      {"circuit_breaker", book.describe(adapter.id())},
      {"health", adapter.describe()},
  };
}

http::Response patch_vendor(jobs::Dispatch& dispatch, const vendors::VendorSet& vendors, http::Request& request,
                            const Caller& caller) {
  const std::string id(request.path_param("id"));
  const auto* adapter = vendors.find(id);
  if (!adapter) return http::problem(404, "not-found", "Not found", "no configured vendor \"" + id + "\"");
  auto body = nlohmann::json::parse(request.body, nullptr, false);
  if (body.is_discarded()) return http::problem(400, "invalid-json", "Invalid JSON", "the body is not valid JSON");
  std::vector<http::FieldError> errors;
  std::optional<bool> enabled;
  std::optional<double> weight;
  if (!body.is_object()) {
    errors.push_back({"", "must be an object"});
  } else {
    for (const auto& [key, value] : body.items()) {
      const auto pointer = "/" + http::json_pointer_escape(key);
      if (key == "enabled") {
        if (value.is_boolean())
          enabled = value.get<bool>();
        else
          errors.push_back({pointer, "must be true or false"});
      } else if (key == "weight") {
        if (value.is_number() && value.get<double>() >= 0 && value.get<double>() <= 1000)
          weight = value.get<double>();
        else
          errors.push_back({pointer, "must be a number from 0 to 1000"});
      } else {
        errors.push_back({pointer, "unknown or read-only field (enabled, weight)"});
      }
    }
    if (errors.empty() && !enabled && !weight) errors.push_back({"", "give enabled, weight or both"});
  }
  if (!errors.empty())
    return http::problem(422, "invalid-vendor-change", "Invalid vendor change", "The change is not valid.", errors);
  dispatch.set_vendor(id, enabled, weight, audit_context(caller, request));
  return http::Response::json(200, vendor_json(*adapter, dispatch.book()).dump());
}

}  // namespace

void register_vendor_routes(http::Router& router, db::ConnectionPool& pool, const vendors::VendorSet& vendors,
                            jobs::Dispatch& dispatch) {
  router.add("GET", "/v1/vendors",
             require_role(pool, auth::Role::viewer, [&vendors, &dispatch](http::Request&, const Caller&) {
               nlohmann::json list = nlohmann::json::array();
               for (const auto& adapter : vendors.all()) list.push_back(vendor_json(*adapter, dispatch.book()));
               return http::Response::json(200, nlohmann::json{{"vendors", list}}.dump());
             }));
  router.add("PATCH", "/v1/vendors/{id}",
             require_role(pool, auth::Role::admin, [&vendors, &dispatch](http::Request& request, const Caller& caller) {
               return patch_vendor(dispatch, vendors, request, caller);
             }));
}

}  // namespace labelbroker::api
