// Scale-style vendor (Scale AI v1 task API); see vendors/scale/README.md.
#include "vendors/scale/scale_adapter.hpp"

#include "common/crypto.hpp"
#include "common/time.hpp"
#include "vendors/common/adapter_support.hpp"
#include "vendors/common/settings.hpp"

namespace labelbroker::vendors::scale {
namespace {

using nlohmann::json;

// Scale task types for the broker's task types.
std::string_view scale_task_type(TaskType t) {
  switch (t) {
    case TaskType::classification:
      return "categorization";
    case TaskType::preference:
      return "comparison";
    case TaskType::rating:
      return "textcollection";
  }
  return "categorization";
}

std::string text_of(const json& data) {
  if (auto text = string_field(data, "text")) return *text;
  return data.dump();
}

UnitStatus status_of(std::string_view s) {
  if (s == "completed") return UnitStatus::completed;
  if (s == "canceled") return UnitStatus::canceled;
  if (s == "error") return UnitStatus::failed;
  return UnitStatus::pending;
}

// The label a Scale response carries, whatever the task type.
std::optional<std::string> answer_of(const json& response) {
  if (!response.is_object()) return std::nullopt;
  for (const char* key : {"category", "choice", "rating", "label"}) {
    auto it = response.find(key);
    if (it == response.end()) continue;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_array() && !it->empty() && it->front().is_string()) return it->front().get<std::string>();
  }
  if (auto fields = response.find("fields"); fields != response.end() && fields->is_object()) {
    for (auto& [_, v] : fields->items())
      if (v.is_string()) return v.get<std::string>();
  }
  return std::nullopt;
}

class ScaleAdapter final : public VendorAdapter {
 public:
  ScaleAdapter(CommonSettings settings, std::vector<std::pair<TaskType, std::int64_t>> prices, std::string project,
               const AdapterContext& context)
      : settings_(std::move(settings)),
        prices_(std::move(prices)),
        project_(std::move(project)),
        callback_url_(context.callback_base_url + "/" + settings_.id),
        authorization_("Basic " + common::base64_encode(settings_.api_key.reveal() + ":")),
        client_(context.runtime, settings_.http) {}

  const std::string& id() const override { return settings_.id; }
  std::string_view kind() const override { return "scale"; }
  const Capabilities& capabilities() const override { return settings_.capabilities; }

  std::int64_t quote_micros(const WorkUnit& unit) const override { return price_of(unit.task_type); }

  SubmitResult submit(const std::vector<WorkUnit>& units) override {
    // Scale creates one task per request: send them all at once (the client caps concurrency).
    std::vector<std::future<HttpOutcome>> pending;
    pending.reserve(units.size());
    for (const auto& unit : units) pending.push_back(client_.send(create_request(unit)));

    SubmitResult result;
    for (size_t i = 0; i < units.size(); ++i) {
      const auto& unit = units[i];
      try {
        result.submitted.push_back(finish_create(unit, pending[i].get()));
      } catch (const VendorError& e) {
        result.failed.push_back({unit.assignment_id, e.error_class(), e.what(), e.retry_after()});
      }
    }
    return result;
  }

  std::vector<UnitResult> poll(const std::vector<UnitRef>& units) override {
    return poll_each(
        client_, units,
        [this](const UnitRef& unit) { return get_request(url("/task/" + url_encode(unit.vendor_task_id))); }, id(),
        [this](const json& body) { return unit_result(body); });
  }

  std::optional<std::vector<UnitResult>> poll_updated_since(std::chrono::system_clock::time_point since) override {
    std::vector<UnitResult> out;
    std::string query = "/tasks?limit=100&updated_after=" + url_encode(common::format_rfc3339(since, true));
    if (!project_.empty()) query += "&project=" + url_encode(project_);
    std::string next_token;
    for (int page = 0;; ++page) {
      auto outcome = client_.send_sync(
          get_request(url(query + (next_token.empty() ? "" : "&next_token=" + url_encode(next_token)))));
      if (!succeeded(outcome)) throw classify_failure(outcome, id(), "list tasks");
      auto body = parse_body(*outcome.response);
      if (!body || !body->is_object() || !body->contains("docs") || !(*body)["docs"].is_array())
        throw malformed("list tasks: no docs array");
      for (const auto& task : (*body)["docs"]) {
        // Only the broker's tasks (the account may hold others).
        auto meta = task.find("metadata");
        if (meta == task.end() || !string_field(*meta, "assignment_id")) continue;
        out.push_back(unit_result(task));
      }
      const bool has_more = body->value("has_more", json(false)) == json(true);
      next_token = string_field(*body, "next_token").value_or("");
      if (!has_more || next_token.empty()) break;
      if (page > 100000) throw malformed("list tasks: pagination does not end");
    }
    return out;
  }

  CancelOutcome cancel(const UnitRef& unit) override {
    auto outcome =
        client_.send_sync(post_request(url("/task/" + url_encode(unit.vendor_task_id) + "/cancel"), "{}", true));
    if (succeeded(outcome)) return CancelOutcome::canceled;
    if (outcome.response && outcome.response->status == 404) return CancelOutcome::not_found;
    if (outcome.response && (outcome.response->status == 400 || outcome.response->status == 409)) {
      // Refused: find out whether it is running or already done.
      auto task = client_.send_sync(get_request(url("/task/" + url_encode(unit.vendor_task_id))));
      if (succeeded(task)) {
        if (auto body = parse_body(*task.response)) {
          const auto status = status_of(string_field(*body, "status").value_or(""));
          if (status == UnitStatus::completed || status == UnitStatus::canceled || status == UnitStatus::failed)
            return CancelOutcome::already_finished;
        }
      }
      return CancelOutcome::already_started;
    }
    throw classify_failure(outcome, id(), "cancel task " + unit.vendor_task_id);
  }

  std::vector<UnitResult> parse_callback(const InboundCallback& callback) override {
    // Scale sends the shared secret itself (not an HMAC) in scale-callback-auth.
    auto auth = callback.header("scale-callback-auth");
    if (!auth || !common::constant_time_equal(*auth, settings_.callback_secret.reveal()))
      throw CallbackRejected("scale-callback-auth missing or wrong");
    auto body = json::parse(callback.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) throw malformed("callback body is not a JSON object");
    auto task = body.find("task");
    if (task == body.end() || !task->is_object()) throw malformed("callback has no task object");
    json merged = *task;
    // The top-level response wins: it is what Scale documents as the callback's answer.
    if (auto response = body.find("response"); response != body.end() && response->is_object())
      merged["response"] = *response;
    return {unit_result(merged)};
  }

  json describe() const override {
    auto stats = client_.stats();
    return {{"base_url", settings_.base_url},
            {"project", project_.empty() ? json(nullptr) : json(project_)},
            {"requests", stats.requests},
            {"in_flight", stats.in_flight}};
  }

 private:
  std::string url(const std::string& path) const { return settings_.base_url + path; }

  std::int64_t price_of(TaskType t) const {
    for (const auto& [type, micros] : prices_)
      if (type == t) return micros;
    return 0;
  }

  OutboundRequest get_request(std::string target) const {
    return {"GET", std::move(target), {{"Authorization", authorization_}, {"Accept", "application/json"}}, "", true};
  }

  OutboundRequest post_request(std::string target, std::string body, bool retry_safe) const {
    return {"POST",
            std::move(target),
            {{"Authorization", authorization_}, {"Content-Type", "application/json"}, {"Accept", "application/json"}},
            std::move(body),
            retry_safe};
  }

  OutboundRequest create_request(const WorkUnit& unit) const {
    json task = {
        {"instruction", unit.instructions},
        {"callback_url", callback_url_},
        {"unique_id", unit.assignment_id},
        {"metadata",
         {{"assignment_id", unit.assignment_id},
          {"job_id", unit.job_id},
          {"item_ref", unit.item_ref},
          {"domain", unit.domain},
          {"task_type", std::string(to_string(unit.task_type))},
          {"expertise", std::string(to_string(unit.expertise))},
          {"data", unit.data}}},
    };
    if (!project_.empty()) task["project"] = project_;
    switch (unit.task_type) {
      case TaskType::classification:
        task["attachment_type"] = "text";
        task["attachment"] = text_of(unit.data);
        task["categories"] = unit.labels;
        break;
      case TaskType::preference:
        task["attachment_type"] = "text";
        task["attachments"] = json::array({text_of(unit.data)});
        task["choices"] = unit.labels;
        break;
      case TaskType::rating:
        task["attachments"] = json::array({{{"type", "text"}, {"content", text_of(unit.data)}}});
        task["fields"] = json::array(
            {{{"type", "category"}, {"field_id", "rating"}, {"title", "Rating"}, {"choices", unit.labels}}});
        break;
    }
    // unique_id makes the create idempotent, so the client may retry it after a 5xx.
    return post_request(url("/task/" + std::string(scale_task_type(unit.task_type))), task.dump(), true);
  }

  SubmittedUnit finish_create(const WorkUnit& unit, const HttpOutcome& outcome) {
    if (succeeded(outcome)) {
      auto body = parse_body(*outcome.response);
      auto task_id = body ? string_field(*body, "task_id") : std::nullopt;
      if (task_id) return {unit.assignment_id, *task_id, false};
      // Created or not? Unknown: look it up by unique_id.
      if (auto existing = find_by_unique_id(unit.assignment_id)) return {unit.assignment_id, *existing, true};
      throw VendorError(ErrorClass::retryable, id() + ": create task: malformed success response");
    }
    if (outcome.response && outcome.response->status == 409) {
      // What the official client does after a 5xx then 409: the task exists; find it.
      if (auto existing = find_by_unique_id(unit.assignment_id)) return {unit.assignment_id, *existing, true};
      throw VendorError(ErrorClass::duplicate,
                        id() + ": unique_id " + unit.assignment_id + " is in use but no task with it was found", 409);
    }
    throw classify_failure(outcome, id(), "create task");
  }

  std::optional<std::string> find_by_unique_id(const std::string& unique_id) {
    auto outcome = client_.send_sync(get_request(url("/tasks?unique_id=" + url_encode(unique_id) + "&limit=1")));
    if (!succeeded(outcome)) return std::nullopt;
    auto body = parse_body(*outcome.response);
    if (!body || !body->is_object()) return std::nullopt;
    auto docs = body->find("docs");
    if (docs == body->end() || !docs->is_array()) return std::nullopt;
    for (const auto& doc : *docs) {
      if (string_field(doc, "unique_id") == unique_id) return string_field(doc, "task_id");
    }
    return std::nullopt;
  }

  UnitResult unit_result(const json& task) const {
    UnitResult r;
    auto task_id = string_field(task, "task_id");
    if (!task_id) throw malformed("task without task_id");
    r.vendor_task_id = *task_id;
    r.assignment_id = string_field(task, "unique_id").value_or("");
    if (r.assignment_id.empty()) {
      if (auto meta = task.find("metadata"); meta != task.end())
        r.assignment_id = string_field(*meta, "assignment_id").value_or("");
    }
    r.status = status_of(string_field(task, "status").value_or("pending"));
    if (r.status == UnitStatus::completed) {
      if (auto response = task.find("response"); response != task.end()) r.answer = answer_of(*response);
      if (!r.answer) throw malformed("completed task " + r.vendor_task_id + " has no answer");
      std::string type = string_field(task, "type").value_or("categorization");
      for (TaskType t : {TaskType::classification, TaskType::preference, TaskType::rating})
        if (scale_task_type(t) == type) r.cost_micros = price_of(t);
      set_completion_times(r, string_field(task, "created_at"), string_field(task, "completed_at"));
    }
    return r;
  }

  VendorError malformed(const std::string& what) const { return malformed_response(id(), what); }

  CommonSettings settings_;
  std::vector<std::pair<TaskType, std::int64_t>> prices_;
  std::string project_;
  std::string callback_url_;
  std::string authorization_;
  HttpClient client_;
};

}  // namespace

std::unique_ptr<VendorAdapter> make_adapter(const config::VendorConfig& vendor, const AdapterContext& context) {
  config::JsonReader reader(vendor.settings, vendor.path, context.config_source, context.env);
  CommonSettings settings = read_common_settings(reader, vendor);
  auto prices = read_price_table(reader, "prices", settings.capabilities.task_types);
  std::string project;
  reader.string("project", project);
  reader.finish();
  return std::make_unique<ScaleAdapter>(std::move(settings), std::move(prices), std::move(project), context);
}

}  // namespace labelbroker::vendors::scale
