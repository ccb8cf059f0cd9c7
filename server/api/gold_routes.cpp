#include "api/gold_routes.hpp"

#include <memory>

#include <nlohmann/json.hpp>

#include "api/auth.hpp"
#include "common/strings.hpp"
#include "common/time.hpp"
#include "db/gold_store.hpp"
#include "http/problem.hpp"
#include "jobs/job_spec.hpp"

namespace labelbroker::api {
namespace {

using nlohmann::json;

// A set as every response shows it: no items, no answers.
json gold_set_json(const db::GoldSetRecord& set) {
  return {{"id", set.id},
          {"name", set.name},
          {"task_type", set.task_type},
          {"labels", set.labels},
          {"item_count", set.item_count},
          {"created_at", common::format_rfc3339(set.created_at, true)}};
}

http::Response not_found(const http::Request& request) {
  return http::problem(404, "not-found", "Not found", "no resource at " + request.path);
}

class GoldRoutes {
 public:
  explicit GoldRoutes(db::ConnectionPool& pool) : pool_(pool) {}

  http::Response create(http::Request& request, const Caller& caller) {
    auto parsed = jobs::parse_document(request.body);
    if (!parsed.problem.empty()) return http::problem(400, "invalid-json", "Invalid JSON", parsed.problem);
    std::string().swap(request.body);  // the document holds everything now; free the text
    auto result = jobs::parse_gold_set(std::move(parsed.document));
    if (!result.gold_set) {
      return http::problem(422, "invalid-gold-set", "Invalid gold set",
                           std::to_string(result.errors.size()) + " problem(s) with the gold set; see errors",
                           result.errors);
    }
    const auto& spec = *result.gold_set;
    db::NewGoldSet set{caller.team_id, spec.name, std::string(vendors::to_string(spec.task_type)), spec.labels};
    std::vector<db::GoldSetItemRef> refs;
    refs.reserve(spec.items.size());
    for (const auto& item : spec.items) refs.push_back({&item.id, &item.data, &item.answer});
    auto created = pool_.run([&](pqxx::connection& c) { return db::create_gold_set(c, set, refs); });
    if (!created) {
      return http::problem(409, "gold-set-exists", "Gold set exists",
                           "the team already has a gold set named '" + spec.name + "'; choose another name");
    }
    http::Response response = http::Response::json(201, gold_set_json(*created).dump());
    response.headers.set("Location", "/v1/gold-sets/" + created->id);
    return response;
  }

  http::Response list(http::Request&, const Caller& caller) {
    auto sets = pool_.run([&](pqxx::connection& c) { return db::list_gold_sets(c, caller.team_id); });
    json out = json::array();
    for (const auto& set : sets) out.push_back(gold_set_json(set));
    return http::Response::json(200, json{{"gold_sets", out}}.dump());
  }

  http::Response get(http::Request& request, const Caller& caller) {
    const std::string id(request.path_param("id"));
    if (!common::is_uuid(id)) return not_found(request);
    auto set = pool_.run([&](pqxx::connection& c) { return db::load_gold_set(c, caller.team_id, id); });
    if (!set) return not_found(request);
    return http::Response::json(200, gold_set_json(*set).dump());
  }

 private:
  db::ConnectionPool& pool_;
};

}  // namespace

void register_gold_routes(http::Router& router, db::ConnectionPool& pool, const config::JobsConfig& limits) {
  auto routes = std::make_shared<GoldRoutes>(pool);
  // A set of up to jobs::kMaxGoldSetItems items is an upload like a job's: it gets the upload limit.
  const http::RouteOptions upload{http::Execution::worker, limits.body_limit_bytes, {}};
  auto bind = [&](auto method, auth::Role role) {
    return require_role(pool, role,
                        [routes, method](http::Request& r, const Caller& c) { return ((*routes).*method)(r, c); });
  };
  router.add("POST", "/v1/gold-sets", bind(&GoldRoutes::create, auth::Role::submitter), upload);
  router.add("GET", "/v1/gold-sets", bind(&GoldRoutes::list, auth::Role::viewer));
  router.add("GET", "/v1/gold-sets/{id}", bind(&GoldRoutes::get, auth::Role::viewer));
}

}  // namespace labelbroker::api
