// Surge-style vendor: the Surge AI projects API (see docs/vendor-sim.md for the mapping to the
// simulation: domain, task type, labels and truth).
#include <cmath>
#include <map>
#include <set>

#include "vendors/sim/engine.hpp"

namespace labelbroker::vendors::sim {
namespace {

using nlohmann::json;

ApiError bad_request(std::string message) {
  return ApiError{400, "bad_request", std::move(message), -1};
}

const std::set<std::string> kQuestionTypes = {"multiple_choice", "checkbox", "free_response",
                                              "likert",          "ranking",  "text_tagging"};

std::string task_type_for_question(const std::string& type) {
  if (type == "multiple_choice" || type == "checkbox") return "classification";
  if (type == "likert") return "rating";
  if (type == "ranking") return "preference";
  return "free_text";
}

std::string surge_task_status(UnitState state) {
  switch (state) {
    case UnitState::queued:
      return "pending";
    case UnitState::in_progress:
      return "in_progress";
    case UnitState::done:
      return "completed";
    case UnitState::canceled:
      return "canceled";
  }
  return "pending";
}

// ?page=N&per_page=M, both 1-based positive integers.
std::size_t positive_query(const http::Request& request, const char* key, std::size_t fallback, std::size_t max) {
  auto v = request.query_param(key);
  if (!v) return fallback;
  const std::string s(*v);
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos || std::stoul(s) < 1 ||
      std::stoul(s) > max)
    throw bad_request(std::string(key) + " must be an integer from 1 to " + std::to_string(max));
  return std::stoul(s);
}

class SurgeApi final : public KindApi {
 public:
  SurgeApi(Engine& engine, Vendor& vendor) : engine_(engine), vendor_(vendor), prefix_("/" + vendor.spec.id + "/api") {}

  bool authorized(const http::Request& request) const override {
    return basic_auth_matches(request, vendor_.spec.api_key);
  }

  http::Response error(const ApiError& e) const override {
    auto r = json_response(e.status, {{"error", e.message}});
    if (e.retry_after_s >= 0) r.headers.set("Retry-After", std::to_string(e.retry_after_s));
    return r;
  }

  void reset() override {
    projects_.clear();
    project_order_.clear();
  }

  bool may_start(const WorkUnit& unit) const override {
    auto it = projects_.find(unit.parent);
    return it != projects_.end() && it->second.status == "in_progress";
  }

  void register_routes(http::Router& router) override {
    add(router, "POST", "/projects", [this](http::Request& r) { return create_project(r); });
    add(router, "GET", "/projects", [this](http::Request& r) { return list_projects(r); });
    add(router, "GET", "/projects/{pid}", [this](http::Request& r) { return get_project(r); });
    for (const char* action : {"launch", "pause", "resume", "cancel"}) {
      add(router, "PUT", std::string("/projects/{pid}/") + action,
          [this, a = std::string(action)](http::Request& r) { return transition(r, a); });
    }
    add(router, "POST", "/projects/{pid}/tasks", [this](http::Request& r) { return create_task(r); });
    add(router, "POST", "/projects/{pid}/tasks/create_tasks", [this](http::Request& r) { return create_tasks(r); });
    add(router, "GET", "/projects/{pid}/tasks", [this](http::Request& r) { return list_tasks(r); });
    add(router, "GET", "/tasks/{id}", [this](http::Request& r) { return get_task(r); });
  }

  std::string on_complete(WorkUnit& unit) override {
    Project& p = projects_.at(unit.parent);
    unit.charged_micros = p.payment_per_response_micros * unit.responses_wanted;
    ++p.num_tasks_completed;
    if (p.status == "in_progress" && p.num_tasks_completed + p.num_tasks_canceled >= p.task_ids.size())
      p.status = "completed";
    return p.callback_url;
  }

  Callback make_callback(const WorkUnit& unit, const std::string& url) override {
    Callback cb;
    cb.url = url;
    cb.body = task_json(unit).dump();
    return cb;
  }

 private:
  struct Project {
    std::string id;
    json request;  // name, instructions, questions, tags, ... as accepted
    std::string status = "unlaunched";
    std::chrono::system_clock::time_point created_at;
    std::vector<std::string> task_ids;
    std::size_t num_tasks_completed = 0;
    std::size_t num_tasks_canceled = 0;
    int num_workers_per_task = 1;
    std::int64_t payment_per_response_micros = 0;
    std::string callback_url;
    std::string domain = "general", expertise = "general", task_type;
    std::string answer_key;  // the question whose answer is simulated
    std::vector<std::string> labels;
  };

  void add(http::Router& router, const char* method, const std::string& path,
           std::function<http::Response(http::Request&)> handler) {
    router.add(method, prefix_ + path,
               [this, h = std::move(handler)](http::Request& r) { return engine_.serve(vendor_, r, h); });
  }

  std::string new_uuid() {
    const std::string h = vendor_.new_id(32);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-4" + h.substr(13, 3) + "-a" + h.substr(17, 3) + "-" +
           h.substr(20, 12);
  }

  json project_json(const Project& p) const {
    json out = {{"id", p.id},
                {"name", p.request["name"]},
                {"status", p.status},
                {"created_at", rfc3339(p.created_at)},
                {"num_tasks", p.task_ids.size()},
                {"num_tasks_completed", p.num_tasks_completed},
                {"num_workers_per_task", p.num_workers_per_task},
                {"payment_per_response", static_cast<double>(p.payment_per_response_micros) / 1e6},
                {"callback_url", p.callback_url.empty() ? json(nullptr) : json(p.callback_url)},
                {"avg_gold_standard_score", nullptr},
                {"interrater_agreement", nullptr},
                {"questions", p.request["questions"]}};
    for (const char* key : {"instructions", "tags", "fields_template", "private_workforce"}) {
      if (p.request.contains(key)) out[key] = p.request[key];
    }
    return out;
  }

  json task_json(const WorkUnit& unit) const {
    json responses = json::array();
    if (unit.state == UnitState::done) {
      const Project& p = projects_.at(unit.parent);
      for (std::size_t i = 0; i < unit.answers.size(); ++i) {
        responses.push_back({{"id", unit.id + "-r" + std::to_string(i + 1)},
                             {"data", {{p.answer_key, unit.answers[i]}}},
                             {"completed_at", rfc3339(unit.completed_at)},
                             {"worker_id", unit.worker_ids[i]}});
      }
    }
    return {{"id", unit.id},
            {"project_id", unit.parent},
            {"status", surge_task_status(unit.state)},
            {"created_at", rfc3339(unit.created_at)},
            {"is_complete", unit.state == UnitState::done},
            {"fields", unit.doc},
            {"is_gold_standard", false},
            {"responses", responses}};
  }

  http::Response create_project(http::Request& request) {
    json body = parse_json_body(request);
    if (!body.is_object()) throw bad_request("Request body must be a JSON object");
    Project p;
    std::string tagged_task_type;
    if (!body.contains("name") || !body["name"].is_string() || body["name"].get<std::string>().empty())
      throw bad_request("name is required and must be a non-empty string");
    if (!body.contains("questions") || !body["questions"].is_array() || body["questions"].empty())
      throw bad_request("questions is required and must be a non-empty array");
    p.payment_per_response_micros = vendor_.spec.payment_per_response_micros;
    if (body.contains("payment_per_response")) {
      const json& v = body["payment_per_response"];
      if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1e6)
        throw bad_request("payment_per_response must be a non-negative number (USD)");
      p.payment_per_response_micros = std::llround(v.get<double>() * 1e6);
    }
    if (body.contains("num_workers_per_task")) {
      const json& v = body["num_workers_per_task"];
      if (!v.is_number_integer() || v.get<long long>() < 1 || v.get<long long>() > 100)
        throw bad_request("num_workers_per_task must be an integer from 1 to 100");
      p.num_workers_per_task = v.get<int>();
    }
    if (body.contains("callback_url")) {
      if (!body["callback_url"].is_string()) throw bad_request("callback_url must be a string");
      p.callback_url = body["callback_url"].get<std::string>();
      if (!valid_callback_url(p.callback_url)) throw bad_request("callback_url must be an http:// or https:// URL");
    }
    for (const char* key : {"instructions", "fields_template"}) {
      if (body.contains(key) && !body[key].is_string() && !body[key].is_object())
        throw bad_request(std::string(key) + " must be a string");
    }
    if (body.contains("private_workforce") && !body["private_workforce"].is_boolean())
      throw bad_request("private_workforce must be a boolean");
    for (const char* key : {"tags", "qualifications_required", "qualifications_forbidden"}) {
      if (!body.contains(key)) continue;
      if (!body[key].is_array()) throw bad_request(std::string(key) + " must be an array of strings");
      for (const auto& t : body[key]) {
        if (!t.is_string()) throw bad_request(std::string(key) + " must be an array of strings");
      }
    }
    if (body.contains("tags")) {
      for (const auto& t : body["tags"]) {
        const std::string tag = t.get<std::string>();
        auto take = [&](const char* prefix, std::string& out) {
          const std::string pre = prefix;
          if (tag.compare(0, pre.size(), pre) == 0 && tag.size() > pre.size()) out = tag.substr(pre.size());
        };
        take("domain:", p.domain);
        take("expertise:", p.expertise);
        take("task_type:", tagged_task_type);
      }
    }

    std::lock_guard lock(vendor_.mutex);
    json questions = json::array();
    std::set<std::string> ids;
    for (std::size_t i = 0; i < body["questions"].size(); ++i) {
      json q = body["questions"][i];
      const std::string where = "questions[" + std::to_string(i) + "]";
      if (!q.is_object()) throw bad_request(where + " must be an object");
      if (!q.contains("text") || !q["text"].is_string()) throw bad_request(where + ".text is required");
      if (!q.contains("type")) q["type"] = "multiple_choice";
      if (!q["type"].is_string() || !kQuestionTypes.count(q["type"].get<std::string>()))
        throw bad_request(
            where + ".type must be one of multiple_choice, checkbox, free_response, likert, ranking, text_tagging");
      if (!q.contains("id")) q["id"] = new_uuid();
      if (!q["id"].is_string() || !ids.insert(q["id"].get<std::string>()).second)
        throw bad_request(where + ".id must be a unique string");
      if (q.contains("required") && !q["required"].is_boolean())
        throw bad_request(where + ".required must be a boolean");
      std::vector<std::string> options;
      if (q.contains("options")) {
        if (!q["options"].is_array()) throw bad_request(where + ".options must be an array of strings");
        for (const auto& o : q["options"]) {
          if (!o.is_string()) throw bad_request(where + ".options must be an array of strings");
          options.push_back(o.get<std::string>());
        }
      }
      const std::string type = q["type"].get<std::string>();
      if (type != "free_response" && type != "text_tagging" && options.size() < 2)
        throw bad_request(where + ".options needs at least 2 entries for a " + type + " question");
      if (p.answer_key.empty() || (p.labels.empty() && !options.empty())) {
        p.answer_key = q["id"].get<std::string>();
        p.labels = options;
        p.task_type = task_type_for_question(type);
      }
      questions.push_back(std::move(q));
    }
    // A "task_type:" tag wins over the type of the answered question.
    if (!tagged_task_type.empty()) p.task_type = tagged_task_type;
    body["questions"] = questions;
    p.request = body;
    p.id = new_uuid();
    p.created_at = engine_.now();
    project_order_.push_back(p.id);
    const Project& stored = projects_[p.id] = std::move(p);
    return json_response(200, project_json(stored));
  }

  Project& find_project(const http::Request& request) {
    auto it = projects_.find(std::string(request.path_param("pid")));
    if (it == projects_.end()) throw ApiError{404, "not_found", "Project not found", -1};
    return it->second;
  }

  http::Response get_project(http::Request& request) {
    std::lock_guard lock(vendor_.mutex);
    return json_response(200, project_json(find_project(request)));
  }

  http::Response list_projects(http::Request& request) {
    const std::size_t page = positive_query(request, "page", 1, 1000000000);
    const std::size_t per_page = positive_query(request, "per_page", 100, 1000);
    std::lock_guard lock(vendor_.mutex);
    json out = json::array();
    for (std::size_t i = (page - 1) * per_page; i < project_order_.size() && out.size() < per_page; ++i)
      out.push_back(project_json(projects_.at(project_order_[i])));
    return json_response(200, out);
  }

  void launch(Project& p) {
    p.status = "in_progress";
    for (const auto& id : p.task_ids) engine_.release(vendor_, vendor_.units.at(id));
  }

  http::Response transition(http::Request& request, const std::string& action) {
    std::lock_guard lock(vendor_.mutex);
    Project& p = find_project(request);
    const std::string& s = p.status;
    auto refuse = [&] { throw bad_request("Cannot " + action + " a project that is " + s); };
    // PUTs are idempotent: asking for the state the project is already in is a no-op.
    if (action == "launch") {
      if (s == "unlaunched")
        launch(p);
      else if (s != "in_progress")
        refuse();
    } else if (action == "pause") {
      if (s == "in_progress")
        p.status = "paused";
      else if (s != "paused")
        refuse();
    } else if (action == "resume") {
      if (s == "paused")
        launch(p);
      else if (s != "in_progress")
        refuse();
    } else if (action == "cancel") {
      if (s == "completed") refuse();
      if (s != "canceled") {
        for (const auto& id : p.task_ids) {
          WorkUnit& unit = vendor_.units.at(id);
          if (unit.state == UnitState::queued && engine_.cancel_unit(vendor_, unit)) ++p.num_tasks_canceled;
        }
        p.status = "canceled";
      }
    }
    return json_response(200, project_json(p));
  }

  // With the mutex held. Validates all fields first so that a bad bulk request creates nothing.
  json create_in(Project& p, const std::vector<json>& all_fields) {
    if (p.status == "canceled") throw bad_request("Project " + p.id + " is canceled; it takes no new tasks");
    engine_.check_capacity(vendor_, all_fields.size());
    if (p.status == "completed") p.status = "in_progress";
    const bool hold = p.status != "in_progress";
    json out = json::array();
    for (const auto& fields : all_fields) {
      WorkUnit unit;
      unit.id = new_uuid();
      unit.parent = p.id;
      unit.doc = fields;
      unit.domain = p.domain;
      unit.expertise = p.expertise;
      unit.task_type = p.task_type;
      unit.labels = p.labels;
      unit.responses_wanted = p.num_workers_per_task;
      unit.truth = true_label(fields, p.labels);
      p.task_ids.push_back(unit.id);
      out.push_back(task_json(engine_.add_unit(vendor_, std::move(unit), hold)));
    }
    return out;
  }

  static void check_fields(const json& fields, const std::string& where) {
    if (!fields.is_object()) throw bad_request(where + " must be an object of field values");
  }

  http::Response create_task(http::Request& request) {
    json body = parse_json_body(request);
    if (!body.is_object() || !body.contains("fields")) throw bad_request("Request body must be {\"fields\": {...}}");
    check_fields(body["fields"], "fields");
    std::lock_guard lock(vendor_.mutex);
    json created = create_in(find_project(request), {body["fields"]});
    return json_response(200, created[0]);
  }

  http::Response create_tasks(http::Request& request) {
    json body = parse_json_body(request);
    if (!body.is_object() || !body.contains("tasks") || !body["tasks"].is_array())
      throw bad_request("Request body must be {\"tasks\": [{...}], \"launch\": bool}");
    if (body["tasks"].size() > 10000) throw bad_request("at most 10000 tasks per request");
    bool do_launch = false;
    if (body.contains("launch")) {
      if (!body["launch"].is_boolean()) throw bad_request("launch must be a boolean");
      do_launch = body["launch"].get<bool>();
    }
    std::vector<json> all;
    for (std::size_t i = 0; i < body["tasks"].size(); ++i) {
      check_fields(body["tasks"][i], "tasks[" + std::to_string(i) + "]");
      all.push_back(body["tasks"][i]);
    }
    std::lock_guard lock(vendor_.mutex);
    Project& p = find_project(request);
    json created = create_in(p, all);
    if (do_launch && p.status == "unlaunched") launch(p);
    // Render again after a launch so that the answer shows the state the client can rely on.
    if (do_launch) {
      for (auto& t : created) t = task_json(vendor_.units.at(t["id"].get<std::string>()));
    }
    return json_response(200, created);
  }

  http::Response list_tasks(http::Request& request) {
    const std::size_t page = positive_query(request, "page", 1, 1000000000);
    const std::size_t per_page = positive_query(request, "per_page", 100, 1000);
    std::lock_guard lock(vendor_.mutex);
    Project& p = find_project(request);
    json out = json::array();
    for (std::size_t i = (page - 1) * per_page; i < p.task_ids.size() && out.size() < per_page; ++i)
      out.push_back(task_json(vendor_.units.at(p.task_ids[i])));
    return json_response(200, out);
  }

  http::Response get_task(http::Request& request) {
    std::lock_guard lock(vendor_.mutex);
    WorkUnit* unit = vendor_.find(std::string(request.path_param("id")));
    if (!unit) throw ApiError{404, "not_found", "Task not found", -1};
    return json_response(200, task_json(*unit));
  }

  Engine& engine_;
  Vendor& vendor_;
  const std::string prefix_;
  std::unordered_map<std::string, Project> projects_;
  std::vector<std::string> project_order_;
};

}  // namespace

std::unique_ptr<KindApi> make_surge_api(Engine& engine, Vendor& vendor) {
  return std::make_unique<SurgeApi>(engine, vendor);
}

}  // namespace labelbroker::vendors::sim
