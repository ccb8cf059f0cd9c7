#include "api/vendor_routes.hpp"

#include "api/auth.hpp"

#include <nlohmann/json.hpp>

namespace labelbroker::api {
namespace {

nlohmann::json vendor_json(const vendors::VendorAdapter& adapter) {
  const auto& caps = adapter.capabilities();
  nlohmann::json task_types = nlohmann::json::array(), expertise = nlohmann::json::array();
  for (auto t : caps.task_types) task_types.push_back(std::string(vendors::to_string(t)));
  for (auto e : caps.expertise) expertise.push_back(std::string(vendors::to_string(e)));
  return {
      {"id", adapter.id()},
      {"kind", std::string(adapter.kind())},
      {"capabilities",
       {{"task_types", task_types},
        {"domains", caps.domains},
        {"expertise", expertise},
        {"max_batch_size", caps.max_batch_size},
        {"max_in_flight", caps.max_in_flight}}},
      {"health", adapter.describe()},
  };
}

}  // namespace

void register_vendor_routes(http::Router& router, db::ConnectionPool& pool, const vendors::VendorSet& vendors) {
  router.add("GET", "/v1/vendors", require_role(pool, auth::Role::viewer, [&vendors](http::Request&, const Caller&) {
               nlohmann::json list = nlohmann::json::array();
               for (const auto& adapter : vendors.all()) list.push_back(vendor_json(*adapter));
               return http::Response::json(200, nlohmann::json{{"vendors", list}}.dump());
             }));
}

}  // namespace labelbroker::api
