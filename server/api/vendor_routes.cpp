#include "api/vendor_routes.hpp"

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

void register_vendor_routes(http::Router& router, const vendors::VendorSet& vendors) {
  // No I/O: describe() reads counters only, so this can answer on the I/O thread.
  router.add(
      "GET", "/v1/vendors",
      [&vendors](http::Request&) {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& adapter : vendors.all()) list.push_back(vendor_json(*adapter));
        return http::Response::json(200, nlohmann::json{{"vendors", list}}.dump());
      },
      http::Execution::io_thread);
}

}  // namespace labelbroker::api
