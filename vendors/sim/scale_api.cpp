// Scale-style vendor: the Scale AI v1 task API (see docs/vendor-sim.md for the mapping to the
// simulation: domain, task type, labels and truth).
#include <map>
#include <set>

#include "vendors/sim/engine.hpp"

namespace labelbroker::vendors::sim {
namespace {

using nlohmann::json;

constexpr const char* kDuplicateUniqueId =
    "The provided idempotency key or unique_id is already in use for a different request";

ApiError bad_request(std::string message) {
  return ApiError{400, "bad_request", std::move(message), -1};
}

ApiError not_found(std::string message) {
  return ApiError{404, "not_found", std::move(message), -1};
}

std::string scale_status(UnitState state) {
  switch (state) {
    case UnitState::queued:
    case UnitState::in_progress:
      return "pending";
    case UnitState::done:
      return "completed";
    case UnitState::canceled:
      return "canceled";
  }
  return "pending";
}

// A JSON array of strings (or, for choice lists, {"label","value"} objects: the value counts).
std::vector<std::string> string_list(const json& body, const std::string& key, bool allow_objects) {
  const auto& v = body.at(key);
  if (!v.is_array()) throw bad_request(key + " must be an array");
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& item : v) {
    std::string s;
    if (item.is_string())
      s = item.get<std::string>();
    else if (allow_objects && item.is_object() && item.contains("value") && item["value"].is_string())
      s = item["value"].get<std::string>();
    else
      throw bad_request(key + " must contain only strings");
    if (!seen.insert(s).second) throw bad_request(key + " contains \"" + s + "\" twice");
    out.push_back(std::move(s));
  }
  return out;
}

class ScaleApi final : public KindApi {
 public:
  ScaleApi(Engine& engine, Vendor& vendor) : engine_(engine), vendor_(vendor), prefix_("/" + vendor.spec.id + "/v1") {}

  bool authorized(const http::Request& request) const override {
    return basic_auth_matches(request, vendor_.spec.api_key);
  }

  http::Response error(const ApiError& e) const override {
    auto r = json_response(e.status, {{"status_code", e.status}, {"error", e.message}});
    if (e.retry_after_s >= 0) r.headers.set("Retry-After", std::to_string(e.retry_after_s));
    return r;
  }

  void reset() override {
    by_unique_id_.clear();
    batches_.clear();
    projects_.clear();
  }

  void register_routes(http::Router& router) override {
    add(router, "POST", "/task/{type}", [this](http::Request& r) { return create_task(r); });
    add(router, "GET", "/task/{id}", [this](http::Request& r) { return get_task(r); });
    add(router, "POST", "/task/{id}/cancel", [this](http::Request& r) { return cancel_task(r); });
    add(router, "GET", "/tasks", [this](http::Request& r) { return list_tasks(r); });
    add(router, "POST", "/batches", [this](http::Request& r) { return create_batch(r); });
    add(router, "POST", "/batches/{name}/finalize", [this](http::Request& r) { return finalize_batch(r); });
    add(router, "GET", "/batches/{name}/status", [this](http::Request& r) { return batch_status(r); });
    add(router, "POST", "/projects", [this](http::Request& r) { return create_project(r); });
    add(router, "GET", "/projects", [this](http::Request& r) { return list_projects(r); });
  }

  std::string on_complete(WorkUnit& unit) override {
    auto price = vendor_.spec.prices_micros.find(unit.doc.value("type", ""));
    unit.charged_micros = price == vendor_.spec.prices_micros.end() ? 0 : price->second;
    return unit.doc.value("callback_url", "");
  }

  Callback make_callback(const WorkUnit& unit, const std::string& url) override {
    json task = task_json(unit);
    Callback cb;
    cb.url = url;
    cb.body = json{{"task", task}, {"response", task["response"]}, {"task_id", unit.id}}.dump();
    cb.headers = {{"scale-callback-auth", vendor_.spec.callback_secret}};
    cb.done = [this, id = unit.id](bool delivered, int) {
      if (WorkUnit* u = vendor_.find(id)) u->callback_succeeded = delivered;
    };
    return cb;
  }

 private:
  struct Batch {
    std::string name, project, callback;
    bool finalized = false;
    std::chrono::system_clock::time_point created_at;
  };

  void add(http::Router& router, const char* method, const std::string& path,
           std::function<http::Response(http::Request&)> handler) {
    router.add(method, prefix_ + path,
               [this, h = std::move(handler)](http::Request& r) { return engine_.serve(vendor_, r, h); });
  }

  json response_json(const WorkUnit& unit) const {
    if (unit.answers.empty()) return nullptr;
    const std::string& answer = unit.answers.front();
    const std::string type = unit.doc.value("type", "");
    if (type == "comparison") return {{"choice", answer}};
    if (type == "textcollection") return {{"fields", {{unit.doc.value("answer_field", "answer"), answer}}}};
    return {{"category", answer}};
  }

  json task_json(const WorkUnit& unit) const {
    const json& d = unit.doc;
    json t = {{"task_id", unit.id},
              {"type", d["type"]},
              {"status", scale_status(unit.state)},
              {"created_at", rfc3339(unit.created_at)},
              {"updated_at", rfc3339(unit.updated_at)},
              {"instruction", d["instruction"]},
              {"params", d["params"]},
              {"callback_url", d["callback_url"]},
              {"metadata", d["metadata"]},
              {"tags", d["tags"]},
              {"audits", json::array()}};
    if (unit.state == UnitState::done) {
      t["completed_at"] = rfc3339(unit.completed_at);
      t["response"] = response_json(unit);
    }
    if (unit.callback_succeeded) t["callback_succeeded"] = *unit.callback_succeeded;
    for (const char* key : {"unique_id", "project", "batch"}) {
      if (d.contains(key)) t[key] = d[key];
    }
    return t;
  }

  http::Response create_task(http::Request& request) {
    const std::string type(request.path_param("type"));
    if (type != "categorization" && type != "comparison" && type != "textcollection")
      throw bad_request("Unsupported task type \"" + type + "\" (categorization, comparison, textcollection)");
    json body = parse_json_body(request);
    if (!body.is_object()) throw bad_request("Request body must be a JSON object");

    WorkUnit unit;
    json& doc = unit.doc;
    doc = {{"type", type},
           {"instruction", ""},
           {"callback_url", ""},
           {"metadata", json::object()},
           {"tags", json::array()}};
    json params = json::object();
    for (auto it = body.begin(); it != body.end(); ++it) {
      const std::string& key = it.key();
      const json& v = it.value();
      if (key == "callback_url" || key == "instruction" || key == "unique_id" || key == "project" || key == "batch") {
        if (!v.is_string()) throw bad_request(key + " must be a string");
        if (key == "unique_id" && v.get<std::string>().empty()) throw bad_request("unique_id must not be empty");
        if (key == "callback_url" && !valid_callback_url(v.get<std::string>()))
          throw bad_request("callback_url must be an http:// or https:// URL");
        doc[key] = v;
      } else if (key == "metadata") {
        if (!v.is_object()) throw bad_request("metadata must be an object");
        doc[key] = v;
      } else if (key == "tags") {
        string_list(body, "tags", false);
        doc[key] = v;
      } else {
        params[key] = v;
      }
    }
    doc["params"] = params;

    const json& metadata = doc["metadata"];
    auto meta_string = [&](const char* key, std::string& out) {
      if (!metadata.contains(key)) return;
      if (!metadata[key].is_string() || metadata[key].get<std::string>().empty())
        throw bad_request(std::string("metadata.") + key + " must be a non-empty string");
      out = metadata[key].get<std::string>();
    };
    meta_string("domain", unit.domain);
    meta_string("expertise", unit.expertise);
    json data = metadata.contains("data") ? metadata["data"] : json::object();
    if (!data.is_object()) throw bad_request("metadata.data must be an object");

    if (type == "categorization") {
      if (!params.contains("attachment") || !params["attachment"].is_string())
        throw bad_request("attachment is required and must be a string");
      if (!params.contains("categories")) throw bad_request("categories is required");
      unit.labels = string_list(params, "categories", false);
      if (unit.labels.size() < 2) throw bad_request("categories needs at least 2 entries");
      unit.task_type = "classification";
      if (!metadata.contains("data")) data = {{"attachment", params["attachment"]}};
    } else if (type == "comparison") {
      unit.labels =
          params.contains("choices") ? string_list(params, "choices", true) : std::vector<std::string>{"A", "B"};
      if (unit.labels.size() < 2) throw bad_request("choices needs at least 2 entries");
      unit.task_type = "preference";
      if (!metadata.contains("data") && params.contains("attachments")) data = {{"attachments", params["attachments"]}};
    } else {
      if (!params.contains("fields") || !params["fields"].is_array() || params["fields"].empty())
        throw bad_request("fields is required and must be a non-empty array");
      unit.task_type = "rating";
      for (const auto& field : params["fields"]) {
        if (!field.is_object()) throw bad_request("fields must contain objects");
        if (!field.contains("field_id") || !field["field_id"].is_string())
          throw bad_request("every field needs a string field_id");
        if (!doc.contains("answer_field")) doc["answer_field"] = field["field_id"];
        if (field.contains("choices") && unit.labels.empty()) {
          unit.labels = string_list(field, "choices", true);
          doc["answer_field"] = field["field_id"];
        }
      }
      if (unit.labels.empty()) unit.task_type = "free_text";
      if (!metadata.contains("data") && params.contains("attachment")) data = {{"attachment", params["attachment"]}};
    }
    if (metadata.contains("task_type")) meta_string("task_type", unit.task_type);
    unit.truth = true_label(data, unit.labels);

    std::lock_guard lock(vendor_.mutex);
    const std::string unique_id = doc.value("unique_id", "");
    if (!unique_id.empty() && by_unique_id_.count(unique_id)) {
      ++vendor_.stats.duplicate_creates_refused;
      throw ApiError{409, "conflict", kDuplicateUniqueId, -1};
    }
    if (doc.contains("batch")) {
      auto b = batches_.find(doc["batch"].get<std::string>());
      if (b == batches_.end()) throw bad_request("Batch \"" + doc["batch"].get<std::string>() + "\" does not exist");
      if (b->second.finalized) throw bad_request("Batch \"" + b->first + "\" is finalized; it takes no new tasks");
    }
    engine_.check_capacity(vendor_, 1);
    unit.id = vendor_.new_id();
    if (!unique_id.empty()) by_unique_id_[unique_id] = unit.id;
    const WorkUnit& stored = engine_.add_unit(vendor_, std::move(unit));
    return json_response(200, task_json(stored));
  }

  WorkUnit& find_task(http::Request& request) {
    WorkUnit* unit = vendor_.find(std::string(request.path_param("id")));
    if (!unit) throw not_found("Task not found: " + std::string(request.path_param("id")));
    return *unit;
  }

  http::Response get_task(http::Request& request) {
    std::lock_guard lock(vendor_.mutex);
    return json_response(200, task_json(find_task(request)));
  }

  http::Response cancel_task(http::Request& request) {
    std::lock_guard lock(vendor_.mutex);
    WorkUnit& unit = find_task(request);
    if (unit.state == UnitState::canceled) return json_response(200, task_json(unit));
    if (!engine_.cancel_unit(vendor_, unit)) {
      const std::string why = unit.state == UnitState::done ? "it is already completed" : "work on it has started";
      throw ApiError{409, "conflict", "Task " + unit.id + " cannot be canceled: " + why, -1};
    }
    return json_response(200, task_json(unit));
  }

  http::Response list_tasks(http::Request& request) {
    std::size_t limit = 100, offset = 0;
    if (auto v = request.query_param("limit")) {
      const std::string s(*v);
      if (s.empty() || s.size() > 4 || s.find_first_not_of("0123456789") != std::string::npos || std::stoul(s) < 1 ||
          std::stoul(s) > 100)
        throw bad_request("limit must be an integer from 1 to 100");
      limit = std::stoul(s);
    }
    if (auto v = request.query_param("next_token")) {
      const std::string s(*v);
      if (!s.empty()) {
        if (s.size() > 12 || s.find_first_not_of("0123456789") != std::string::npos)
          throw bad_request("next_token is not valid");
        offset = std::stoul(s);
      }
    }
    std::optional<std::string> status;
    if (auto v = request.query_param("status")) {
      status = std::string(*v);
      if (*status != "pending" && *status != "completed" && *status != "canceled" && *status != "error")
        throw bad_request("status must be one of pending, completed, canceled, error");
    }
    std::optional<std::chrono::system_clock::time_point> updated_after;
    if (auto v = request.query_param("updated_after")) {
      updated_after = common::parse_rfc3339(*v);
      if (!updated_after) throw bad_request("updated_after must be an RFC 3339 time");
    }
    auto filter = [&](const char* key) -> std::optional<std::string> {
      if (auto v = request.query_param(key)) return std::string(*v);
      return std::nullopt;
    };
    const auto project = filter("project"), batch = filter("batch"), unique_id = filter("unique_id");

    std::lock_guard lock(vendor_.mutex);
    // A unique_id names at most one task: answer the official client's 409 lookup from the index.
    std::vector<std::string> single;
    if (unique_id) {
      auto it = by_unique_id_.find(*unique_id);
      if (it != by_unique_id_.end()) single.push_back(it->second);
    }
    json docs = json::array();
    std::size_t total = 0;
    for (const auto& id : unique_id ? single : vendor_.order) {
      const WorkUnit& unit = vendor_.units.at(id);
      const json& d = unit.doc;
      if (project && d.value("project", "") != *project) continue;
      if (batch && d.value("batch", "") != *batch) continue;
      if (unique_id && d.value("unique_id", "") != *unique_id) continue;
      if (status && scale_status(unit.state) != *status) continue;
      if (updated_after && unit.updated_at <= *updated_after) continue;
      if (total >= offset && docs.size() < limit) docs.push_back(task_json(unit));
      ++total;
    }
    const bool has_more = offset + docs.size() < total;
    return json_response(200, {{"docs", docs},
                               {"total", total},
                               {"limit", limit},
                               {"offset", offset},
                               {"has_more", has_more},
                               {"next_token", has_more ? json(std::to_string(offset + docs.size())) : json(nullptr)}});
  }

  static std::string required_string(const json& body, const char* key) {
    if (!body.contains(key) || !body[key].is_string() || body[key].get<std::string>().empty())
      throw bad_request(std::string(key) + " is required and must be a non-empty string");
    return body[key].get<std::string>();
  }

  json batch_json(const Batch& b) const {
    return {{"name", b.name},
            {"project", b.project},
            {"callback", b.callback},
            {"status", b.finalized ? "in_progress" : "staging"},
            {"created_at", rfc3339(b.created_at)}};
  }

  http::Response create_batch(http::Request& request) {
    json body = parse_json_body(request);
    if (!body.is_object()) throw bad_request("Request body must be a JSON object");
    Batch b;
    b.name = required_string(body, "name");
    b.project = required_string(body, "project");
    if (body.contains("callback")) {
      if (!body["callback"].is_string()) throw bad_request("callback must be a string");
      b.callback = body["callback"].get<std::string>();
    }
    std::lock_guard lock(vendor_.mutex);
    if (batches_.count(b.name)) throw ApiError{409, "conflict", "A batch named \"" + b.name + "\" already exists", -1};
    b.created_at = engine_.now();
    auto& stored = batches_[b.name] = b;
    return json_response(200, batch_json(stored));
  }

  Batch& find_batch(http::Request& request) {
    auto it = batches_.find(std::string(request.path_param("name")));
    if (it == batches_.end()) throw not_found("Batch not found: " + std::string(request.path_param("name")));
    return it->second;
  }

  http::Response finalize_batch(http::Request& request) {
    std::lock_guard lock(vendor_.mutex);
    Batch& b = find_batch(request);
    b.finalized = true;
    return json_response(200, batch_json(b));
  }

  http::Response batch_status(http::Request& request) {
    std::lock_guard lock(vendor_.mutex);
    Batch& b = find_batch(request);
    std::map<std::string, std::size_t> counts{{"pending", 0}, {"completed", 0}, {"canceled", 0}, {"error", 0}};
    for (const auto& id : vendor_.order) {
      const WorkUnit& unit = vendor_.units.at(id);
      if (unit.doc.value("batch", "") == b.name) ++counts[scale_status(unit.state)];
    }
    const char* status = !b.finalized ? "staging" : counts["pending"] > 0 ? "in_progress" : "completed";
    return json_response(200, {{"status", status},
                               {"pending", counts["pending"]},
                               {"completed", counts["completed"]},
                               {"canceled", counts["canceled"]},
                               {"error", counts["error"]}});
  }

  http::Response create_project(http::Request& request) {
    json body = parse_json_body(request);
    if (!body.is_object()) throw bad_request("Request body must be a JSON object");
    const std::string name = required_string(body, "name");
    const std::string type = required_string(body, "type");
    json params = body.contains("params") ? body["params"] : json::object();
    if (!params.is_object()) throw bad_request("params must be an object");
    std::lock_guard lock(vendor_.mutex);
    for (const auto& p : projects_) {
      if (p["name"] == name) throw ApiError{409, "conflict", "A project named \"" + name + "\" already exists", -1};
    }
    projects_.push_back({{"type", type}, {"name", name}, {"params", params}, {"created_at", rfc3339(engine_.now())}});
    return json_response(200, projects_.back());
  }

  http::Response list_projects(http::Request&) {
    std::lock_guard lock(vendor_.mutex);
    return json_response(200, json(projects_));
  }

  Engine& engine_;
  Vendor& vendor_;
  const std::string prefix_;
  std::unordered_map<std::string, std::string> by_unique_id_;
  std::map<std::string, Batch> batches_;
  std::vector<json> projects_;
};

}  // namespace

std::unique_ptr<KindApi> make_scale_api(Engine& engine, Vendor& vendor) {
  return std::make_unique<ScaleApi>(engine, vendor);
}

}  // namespace labelbroker::vendors::sim
