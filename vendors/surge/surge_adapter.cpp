// Surge-style vendor (Surge AI projects API); see vendors/surge/README.md.
#include "vendors/surge/surge_adapter.hpp"

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "common/crypto.hpp"
#include "common/money.hpp"
#include "vendors/common/adapter_support.hpp"
#include "vendors/common/settings.hpp"

namespace labelbroker::vendors::surge {
namespace {

using nlohmann::json;

// The one question every broker project asks; its id keys the answer in each response.
constexpr const char* kQuestionId = "label";
constexpr int kPageSize = 100;

std::string_view question_type(TaskType t) {
  switch (t) {
    case TaskType::classification:
      return "multiple_choice";
    case TaskType::preference:
      return "ranking";
    case TaskType::rating:
      return "likert";
  }
  return "multiple_choice";
}

UnitStatus status_of(std::string_view s) {
  if (s == "completed") return UnitStatus::completed;
  if (s == "in_progress") return UnitStatus::in_progress;
  if (s == "canceled") return UnitStatus::canceled;
  return UnitStatus::pending;
}

// A Surge project holds one question set, so the broker uses one project per (job, question set).
struct ProjectKey {
  std::string job_id;
  std::string digest;  // of task type, labels, instructions, domain, expertise
  std::string name() const { return "lb-" + job_id + "-" + digest; }
};

ProjectKey project_key(const WorkUnit& unit) {
  json question_set = {std::string(to_string(unit.task_type)), unit.labels, unit.instructions, unit.domain,
                       std::string(to_string(unit.expertise))};
  return {unit.job_id, common::sha256_hex(question_set.dump()).substr(0, 16)};
}

struct Project {
  std::string id;
  std::unordered_map<std::string, std::string> task_by_ref;  // _broker_ref -> task id
};

class SurgeAdapter final : public VendorAdapter {
 public:
  SurgeAdapter(CommonSettings settings, std::int64_t payment_micros, int workers_per_task,
               const AdapterContext& context)
      : settings_(std::move(settings)),
        payment_micros_(payment_micros),
        workers_per_task_(workers_per_task),
        // Surge does not sign callbacks: the secret travels in the URL we register.
        callback_url_(context.callback_base_url + "/" + settings_.id +
                      "?token=" + url_encode(settings_.callback_secret.reveal())),
        authorization_("Basic " + common::base64_encode(settings_.api_key.reveal() + ":")),
        client_(context.runtime, settings_.http) {}

  const std::string& id() const override { return settings_.id; }
  std::string_view kind() const override { return "surge"; }
  const Capabilities& capabilities() const override { return settings_.capabilities; }
  std::int64_t quote_micros(const WorkUnit&) const override { return payment_micros_ * workers_per_task_; }

  SubmitResult submit(const std::vector<WorkUnit>& units) override {
    SubmitResult result;
    // Group by project, keeping the caller's order within each group.
    std::vector<std::pair<std::string, std::vector<const WorkUnit*>>> groups;
    for (const auto& unit : units) {
      const std::string name = project_key(unit).name();
      auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == name; });
      if (it == groups.end())
        groups.push_back({name, {&unit}});
      else
        it->second.push_back(&unit);
    }
    for (const auto& [name, group] : groups) {
      try {
        submit_group(*group.front(), group, result);
      } catch (const VendorError& e) {
        fail_all(group, e, result);
      }
    }
    return result;
  }

  std::vector<UnitResult> poll(const std::vector<UnitRef>& units) override {
    return poll_each(
        client_, units, [this](const UnitRef& unit) { return get(url("/tasks/" + url_encode(unit.vendor_task_id))); },
        id(), [this](const json& body) { return unit_result(body); });
  }

  CancelOutcome cancel(const UnitRef& unit) override {
    auto outcome = client_.send_sync(get(url("/tasks/" + url_encode(unit.vendor_task_id))));
    if (outcome.response && outcome.response->status == 404) return CancelOutcome::not_found;
    if (!succeeded(outcome)) throw classify_failure(outcome, id(), "cancel task " + unit.vendor_task_id);
    auto body = parse_body(*outcome.response);
    if (!body || !body->is_object()) throw malformed("task " + unit.vendor_task_id);
    switch (status_of(string_field(*body, "status").value_or(""))) {
      case UnitStatus::completed:
      case UnitStatus::canceled:
      case UnitStatus::failed:
        return CancelOutcome::already_finished;
      case UnitStatus::in_progress:
        return CancelOutcome::already_started;
      case UnitStatus::pending:
        break;
    }
    // Surge can cancel a project, not one task: canceling here would cancel the job's other units.
    return CancelOutcome::unsupported;
  }

  // Surge has no "changed since" filter: page through every known project's tasks, which is still
  // one request per hundred tasks instead of one per task.
  std::optional<std::vector<UnitResult>> poll_updated_since(std::chrono::system_clock::time_point) override {
    std::vector<std::string> project_ids;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [_, project] : projects_) project_ids.push_back(project.id);
    }
    std::vector<UnitResult> out;
    for (const auto& project_id : project_ids) {
      for_each_task_page(project_id, [&](const json& task) {
        auto fields = task.find("fields");
        if (fields != task.end() && string_field(*fields, "_broker_ref")) out.push_back(unit_result(task));
      });
    }
    return out;
  }

  // Cancels the job's projects: Surge then cancels their tasks that have not started.
  std::optional<std::size_t> cancel_job(const std::string& job_id) override {
    std::vector<std::string> project_ids;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [name, project] : projects_)
        if (name.rfind("lb-" + job_id + "-", 0) == 0) project_ids.push_back(project.id);
    }
    for (const auto& project_id : project_ids) {
      auto outcome = client_.send_sync(send_json("PUT", url("/projects/" + project_id + "/cancel"), "", true));
      if (!succeeded(outcome)) throw classify_failure(outcome, id(), "cancel project " + project_id);
    }
    return project_ids.size();
  }

  std::vector<UnitResult> parse_callback(const InboundCallback& callback) override {
    auto token = callback.query_param("token");
    if (!token || !common::constant_time_equal(*token, settings_.callback_secret.reveal()))
      throw CallbackRejected("token missing or wrong");
    auto body = json::parse(callback.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) throw malformed("callback body is not a task object");
    return {unit_result(body)};
  }

  json describe() const override {
    auto stats = client_.stats();
    std::lock_guard lock(mutex_);
    return {{"base_url", settings_.base_url},
            {"projects", projects_.size()},
            {"requests", stats.requests},
            {"in_flight", stats.in_flight}};
  }

 private:
  std::string url(const std::string& path) const { return settings_.base_url + path; }

  OutboundRequest get(std::string target) const {
    return {"GET", std::move(target), {{"Authorization", authorization_}, {"Accept", "application/json"}}, "", true};
  }
  OutboundRequest send_json(std::string method, std::string target, std::string body, bool retry_safe) const {
    return {std::move(method),
            std::move(target),
            {{"Authorization", authorization_}, {"Content-Type", "application/json"}, {"Accept", "application/json"}},
            std::move(body),
            retry_safe};
  }

  // Creates the group's units in one bulk request. Units already at the vendor (known by their
  // _broker_ref) are not created again.
  void submit_group(const WorkUnit& first, const std::vector<const WorkUnit*>& group, SubmitResult& result) {
    std::lock_guard lock(mutex_);
    Project& project = ensure_project(first);
    // Another process (or this one before a restart) may have created some of these: this
    // process's list of the project's tasks can be stale, so refresh it before creating anything.
    const bool stale = std::any_of(group.begin(), group.end(), [&](const WorkUnit* u) {
      return u->may_exist && !project.task_by_ref.count(u->assignment_id);
    });
    if (stale) load_tasks(project);
    json tasks = json::array();
    std::vector<const WorkUnit*> to_create;
    for (const auto* unit : group) {
      if (auto it = project.task_by_ref.find(unit->assignment_id); it != project.task_by_ref.end()) {
        result.submitted.push_back({unit->assignment_id, it->second, true});
        continue;
      }
      json fields = unit->data.is_object() ? unit->data : json{{"value", unit->data}};
      fields["_broker_ref"] = unit->assignment_id;
      tasks.push_back(std::move(fields));
      to_create.push_back(unit);
    }
    if (to_create.empty()) return;

    // No idempotency key exists at Surge, so the client must not blindly resend this.
    auto outcome = client_.send_sync(send_json("POST", url("/projects/" + project.id + "/tasks/create_tasks"),
                                               json{{"tasks", tasks}, {"launch", true}}.dump(), false));
    if (succeeded(outcome)) {
      if (auto body = parse_body(*outcome.response); body && body->is_array()) {
        for (const auto& task : *body) remember(project, task);
      }
    } else if (outcome.response && outcome.response->status < 500 && outcome.response->status != 408 &&
               outcome.response->status != 429) {
      throw classify_failure(outcome, id(), "create tasks");  // definite: nothing was created
    }
    if (!succeeded(outcome) || !all_known(project, to_create)) {
      // Uncertain (lost response, 5xx, timeout, unreadable body): find what exists before anyone
      // creates again.
      load_tasks(project);
    }
    for (const auto* unit : to_create) {
      if (auto it = project.task_by_ref.find(unit->assignment_id); it != project.task_by_ref.end()) {
        result.submitted.push_back({unit->assignment_id, it->second, !succeeded(outcome)});
      } else {
        auto error = succeeded(outcome) ? malformed("create tasks: task missing from the answer")
                                        : classify_failure(outcome, id(), "create tasks");
        result.failed.push_back({unit->assignment_id, ErrorClass::retryable, error.what(), error.retry_after()});
      }
    }
  }

  bool all_known(const Project& project, const std::vector<const WorkUnit*>& units) const {
    for (const auto* unit : units)
      if (!project.task_by_ref.count(unit->assignment_id)) return false;
    return true;
  }

  void remember(Project& project, const json& task) {
    auto task_id = string_field(task, "id");
    auto fields = task.find("fields");
    if (!task_id || fields == task.end()) return;
    if (auto ref = string_field(*fields, "_broker_ref")) project.task_by_ref[*ref] = *task_id;
  }

  // Pages through a project's tasks (GET /projects/{id}/tasks?page=N&per_page=100).
  template <typename Fn>
  void for_each_task_page(const std::string& project_id, Fn&& fn) {
    for (int page = 1;; ++page) {
      auto outcome = client_.send_sync(get(url("/projects/" + project_id + "/tasks?page=" + std::to_string(page) +
                                               "&per_page=" + std::to_string(kPageSize))));
      if (!succeeded(outcome)) throw classify_failure(outcome, id(), "list tasks of project " + project_id);
      auto body = parse_body(*outcome.response);
      if (!body || !body->is_array()) throw malformed("list tasks of project " + project_id);
      for (const auto& task : *body) fn(task);
      if (body->size() < static_cast<size_t>(kPageSize)) break;
    }
  }

  void load_tasks(Project& project) {
    for_each_task_page(project.id, [&](const json& task) { remember(project, task); });
  }

  // Finds or creates (and launches) the unit's project. Called with mutex_ held.
  Project& ensure_project(const WorkUnit& unit) {
    const ProjectKey key = project_key(unit);
    const std::string name = key.name();
    if (auto it = projects_.find(name); it != projects_.end()) return it->second;

    Project project;
    std::string status = "unlaunched";
    if (auto existing = find_project(name)) {
      project.id = string_field(*existing, "id").value_or("");
      status = string_field(*existing, "status").value_or("unlaunched");
      if (project.id.empty()) throw malformed("project " + name + " without id");
    } else {
      json body = {
          {"name", name},
          {"instructions", unit.instructions},
          {"questions", json::array({{{"id", kQuestionId},
                                      {"text", unit.instructions.empty() ? "Label the item" : unit.instructions},
                                      {"type", std::string(question_type(unit.task_type))},
                                      {"options", unit.labels},
                                      {"required", true}}})},
          {"num_workers_per_task", workers_per_task_},
          // Surge's wire format takes dollars as a JSON number; the broker's own books stay in micros.
          {"payment_per_response", static_cast<double>(payment_micros_) / 1e6},
          {"callback_url", callback_url_},
          {"tags", json::array({"domain:" + unit.domain, "expertise:" + std::string(to_string(unit.expertise)),
                                "task_type:" + std::string(to_string(unit.task_type)), "job:" + unit.job_id})},
      };
      auto outcome = client_.send_sync(send_json("POST", url("/projects"), body.dump(), false));
      std::optional<json> created;
      if (succeeded(outcome)) created = parse_body(*outcome.response);
      // Another broker process may have created the same project a moment earlier (names are not
      // unique at Surge). Everyone uses the first one listed (the oldest), so all processes put the
      // job's tasks in one project and can find each other's tasks; an extra one stays empty.
      if (auto first = find_project(name)) created = first;
      if (!created || !string_field(*created, "id")) {
        if (outcome.response && !succeeded(outcome)) throw classify_failure(outcome, id(), "create project");
        throw VendorError(ErrorClass::retryable, id() + ": create project: no project id in the answer");
      }
      project.id = *string_field(*created, "id");
      status = string_field(*created, "status").value_or("unlaunched");
    }
    // Only a new project needs launching; a completed one takes new tasks as they come, and a
    // paused or canceled one stays as its owner left it.
    if (status == "unlaunched") {
      auto launched = client_.send_sync(send_json("PUT", url("/projects/" + project.id + "/launch"), "", true));
      if (!succeeded(launched)) throw classify_failure(launched, id(), "launch project " + project.id);
    }
    load_tasks(project);
    return projects_.emplace(name, std::move(project)).first->second;
  }

  std::optional<json> find_project(const std::string& name) {
    for (int page = 1;; ++page) {
      auto outcome = client_.send_sync(
          get(url("/projects?page=" + std::to_string(page) + "&per_page=" + std::to_string(kPageSize))));
      if (!succeeded(outcome)) throw classify_failure(outcome, id(), "list projects");
      auto body = parse_body(*outcome.response);
      if (!body || !body->is_array()) throw malformed("list projects");
      for (const auto& p : *body)
        if (string_field(p, "name") == name) return p;
      if (body->size() < static_cast<size_t>(kPageSize)) return std::nullopt;
    }
  }

  UnitResult unit_result(const json& task) const {
    UnitResult r;
    auto task_id = string_field(task, "id");
    if (!task_id) throw malformed("task without id");
    r.vendor_task_id = *task_id;
    if (auto fields = task.find("fields"); fields != task.end())
      r.assignment_id = string_field(*fields, "_broker_ref").value_or("");
    r.status = status_of(string_field(task, "status").value_or("pending"));
    if (r.status != UnitStatus::completed) return r;
    auto responses = task.find("responses");
    if (responses == task.end() || !responses->is_array() || responses->empty() || !responses->front().is_object())
      throw malformed("completed task " + r.vendor_task_id + " has no response");
    const auto& response = responses->front();
    if (auto data = response.find("data"); data != response.end()) r.answer = string_field(*data, kQuestionId);
    if (!r.answer) throw malformed("completed task " + r.vendor_task_id + " has no answer");
    r.worker_id = string_field(response, "worker_id");
    r.cost_micros = payment_micros_ * static_cast<std::int64_t>(workers_per_task_);
    set_completion_times(r, string_field(task, "created_at"), string_field(response, "completed_at"));
    return r;
  }

  VendorError malformed(const std::string& what) const { return malformed_response(id(), what); }

  CommonSettings settings_;
  std::int64_t payment_micros_;
  int workers_per_task_;
  std::string callback_url_;
  std::string authorization_;
  HttpClient client_;
  mutable std::mutex mutex_;  // guards projects_; held while a project is found or created
  std::unordered_map<std::string, Project> projects_;
};

}  // namespace

std::unique_ptr<VendorAdapter> make_adapter(const config::VendorConfig& vendor, const AdapterContext& context) {
  config::JsonReader reader(vendor.settings, vendor.path, context.config_source, context.env);
  CommonSettings settings = read_common_settings(reader, vendor);
  std::string payment = "";
  reader.require("payment_per_response");
  reader.string("payment_per_response", payment);
  auto micros = common::parse_usd_micros(payment);
  if (!micros || *micros == 0)
    reader.fail(reader.child_path("payment_per_response"), "expected a positive decimal USD amount such as \"0.15\"");
  int workers = 1;
  reader.integer("num_workers_per_task", workers, 1, 100);
  reader.finish();
  return std::make_unique<SurgeAdapter>(std::move(settings), *micros, workers, context);
}

}  // namespace labelbroker::vendors::surge
