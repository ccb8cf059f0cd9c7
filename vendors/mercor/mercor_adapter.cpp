// Mercor-style vendor (expert engagements); see vendors/mercor/README.md.
#include "vendors/mercor/mercor_adapter.hpp"

#include <cmath>
#include <ctime>
#include <map>
#include <mutex>

#include "common/crypto.hpp"
#include "common/money.hpp"
#include "common/time.hpp"
#include "vendors/common/adapter_support.hpp"
#include "vendors/common/settings.hpp"

namespace labelbroker::vendors::mercor {
namespace {

using nlohmann::json;

// Callbacks older (or newer) than this are refused: a captured callback cannot be replayed later.
constexpr std::chrono::seconds kMaxCallbackSkew{300};

struct Options {
  std::int64_t hourly_rate_max_micros = 0;
  int weekly_cap_hours = 40;
  int headcount = 1;
  int expected_minutes_per_item = 10;
  std::vector<std::string> skills;
};

struct Engagement {
  std::string id;
  std::int64_t hourly_rate_micros = 0;
};

UnitStatus status_of(std::string_view s) {
  if (s == "done") return UnitStatus::completed;
  if (s == "in_progress") return UnitStatus::in_progress;
  if (s == "canceled") return UnitStatus::canceled;
  return UnitStatus::pending;
}

std::optional<std::int64_t> usd_field(const json& object, std::string_view key) {
  if (auto text = string_field(object, key)) return common::parse_usd_micros(*text);
  if (auto number = number_field(object, key); number && *number >= 0) return std::llround(*number * 1e6);
  return std::nullopt;
}

// Mercor errors are {"error": {"code": "...", "message": "..."}}.
std::string error_code(const InboundResponse& response) {
  auto body = parse_body(response);
  if (!body || !body->is_object()) return "";
  auto error = body->find("error");
  if (error == body->end() || !error->is_object()) return "";
  return string_field(*error, "code").value_or("");
}

class MercorAdapter final : public VendorAdapter {
 public:
  MercorAdapter(CommonSettings settings, Options options, const AdapterContext& context)
      : settings_(std::move(settings)),
        options_(std::move(options)),
        callback_url_(context.callback_base_url + "/" + settings_.id),
        authorization_("Bearer " + settings_.api_key.reveal()),
        client_(context.runtime, settings_.http) {}

  const std::string& id() const override { return settings_.id; }
  std::string_view kind() const override { return "mercor"; }
  const Capabilities& capabilities() const override { return settings_.capabilities; }

  // An upper bound (the rate cap times the expected minutes), so holds never fall short.
  std::int64_t quote_micros(const WorkUnit&) const override {
    return options_.hourly_rate_max_micros * options_.expected_minutes_per_item / 60;
  }

  SubmitResult submit(const std::vector<WorkUnit>& units) override {
    SubmitResult result;
    std::map<std::pair<std::string, Expertise>, std::vector<const WorkUnit*>> groups;
    for (const auto& unit : units) groups[{unit.domain, unit.expertise}].push_back(&unit);
    for (const auto& [key, group] : groups) {
      try {
        submit_group(key.first, key.second, group, result);
      } catch (const VendorError& e) {
        fail_all(group, e, result);
      }
    }
    return result;
  }

  std::vector<UnitResult> poll(const std::vector<UnitRef>& units) override {
    return poll_each(
        client_, units,
        [this](const UnitRef& unit) { return get(url("/work-items/" + url_encode(unit.vendor_task_id))); }, id(),
        [this](const json& body) { return unit_result(body); });
  }

  CancelOutcome cancel(const UnitRef& unit) override {
    const std::string path = "/work-items/" + url_encode(unit.vendor_task_id);
    auto outcome = client_.send_sync(post(url(path + "/cancel"), "{}", "lb-cancel-" + unit.vendor_task_id));
    if (succeeded(outcome)) return CancelOutcome::canceled;
    if (outcome.response && outcome.response->status == 404) return CancelOutcome::not_found;
    if (outcome.response && outcome.response->status == 409) {
      auto item = client_.send_sync(get(url(path)));
      if (succeeded(item)) {
        if (auto body = parse_body(*item.response)) {
          auto status = status_of(string_field(*body, "status").value_or(""));
          if (status == UnitStatus::completed || status == UnitStatus::canceled) return CancelOutcome::already_finished;
        }
      }
      return CancelOutcome::already_started;
    }
    throw classify_failure(outcome, id(), "cancel work item " + unit.vendor_task_id);
  }

  std::vector<UnitResult> parse_callback(const InboundCallback& callback) override {
    auto signature = callback.header("X-Signature");
    auto timestamp = callback.header("X-Timestamp");
    if (!signature || !timestamp) throw CallbackRejected("X-Signature or X-Timestamp missing");
    const std::string expected = "sha256=" + common::hmac_sha256_hex(settings_.callback_secret.reveal(), callback.body);
    if (!common::constant_time_equal(*signature, expected)) throw CallbackRejected("signature does not match");
    // Checked after the signature, so an attacker learns nothing about the clock.
    if (timestamp->empty() || timestamp->size() > 12 ||
        timestamp->find_first_not_of("0123456789") != std::string_view::npos)
      throw CallbackRejected("X-Timestamp is not unix seconds");
    const auto sent = std::chrono::system_clock::time_point(std::chrono::seconds(std::stoll(std::string(*timestamp))));
    const auto skew = callback.received_at > sent ? callback.received_at - sent : sent - callback.received_at;
    if (skew > kMaxCallbackSkew) throw CallbackRejected("X-Timestamp is more than 5 minutes away");

    auto body = json::parse(callback.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) throw malformed("callback body is not a JSON object");
    auto item = body.find("work_item");
    if (item == body.end() || !item->is_object()) throw malformed("callback without work_item");
    return {unit_result(*item)};
  }

  json describe() const override {
    auto stats = client_.stats();
    std::lock_guard lock(mutex_);
    json engagements = json::array();
    for (const auto& [key, list] : engagements_)
      for (const auto& e : list) engagements.push_back({{"domain", key.first}, {"engagement_id", e.id}});
    return {{"base_url", settings_.base_url},
            {"engagements", engagements},
            {"requests", stats.requests},
            {"in_flight", stats.in_flight}};
  }

 private:
  std::string url(const std::string& path) const { return settings_.base_url + path; }

  OutboundRequest get(std::string target) const {
    return {"GET", std::move(target), {{"Authorization", authorization_}, {"Accept", "application/json"}}, "", true};
  }
  // Every POST carries an Idempotency-Key, so the client may resend it safely.
  OutboundRequest post(std::string target, std::string body, const std::string& idempotency_key) const {
    return {"POST",
            std::move(target),
            {{"Authorization", authorization_},
             {"Content-Type", "application/json"},
             {"Accept", "application/json"},
             {"Idempotency-Key", idempotency_key}},
            std::move(body),
            true};
  }

  std::string key_for(std::string_view what, const std::string& input) const {
    return "lb-" + std::string(what) + "-" + common::sha256_hex(settings_.id + "\n" + input).substr(0, 40);
  }

  void submit_group(const std::string& domain, Expertise expertise, const std::vector<const WorkUnit*>& group,
                    SubmitResult& result) {
    const auto engagements = ensure_engagements(domain, expertise);
    // Spread batches over the engaged experts; a deterministic choice per batch keeps a
    // re-submitted batch on the same engagement, so its Idempotency-Key replays.
    std::string refs;
    json items = json::array();
    for (const auto* unit : group) {
      refs += unit->assignment_id + "\n";
      items.push_back({{"ref", unit->assignment_id},
                       {"task_type", std::string(to_string(unit->task_type))},
                       {"instructions", unit->instructions},
                       {"labels", unit->labels},
                       {"data", unit->data}});
    }
    const std::string digest = common::sha256_hex(refs);
    const auto& engagement = engagements[std::stoull(digest.substr(0, 8), nullptr, 16) % engagements.size()];
    auto outcome = client_.send_sync(post(url("/engagements/" + engagement.id + "/work-items"),
                                          json{{"items", items}}.dump(), key_for("work", engagement.id + refs)));
    if (outcome.response && outcome.response->status == 429 && error_code(*outcome.response) == "weekly_cap_reached") {
      // The expert's weekly cap is used up: capacity, to be routed elsewhere or retried next week.
      // Any other 429 is an ordinary rate limit (retryable, classified below).
      auto error = classify_failure(outcome, id(), "create work items");
      throw VendorError(ErrorClass::capacity, error.what(), 429, error.retry_after());
    }
    if (!succeeded(outcome)) throw classify_failure(outcome, id(), "create work items");
    auto body = parse_body(*outcome.response);
    if (!body || !body->is_object() || !body->contains("accepted") || !(*body)["accepted"].is_array())
      throw VendorError(ErrorClass::retryable, id() + ": create work items: malformed answer (safe to retry)");
    std::map<std::string, std::string> by_ref;
    for (const auto& a : (*body)["accepted"]) {
      auto ref = string_field(a, "ref");
      auto work_item = string_field(a, "work_item_id");
      if (ref && work_item) by_ref[*ref] = *work_item;
    }
    for (const auto* unit : group) {
      auto it = by_ref.find(unit->assignment_id);
      if (it != by_ref.end()) {
        const bool replayed =
            outcome.response->header("Idempotent-Replayed") == std::optional<std::string_view>("true");
        result.submitted.push_back({unit->assignment_id, it->second, replayed});
      } else {
        result.failed.push_back({unit->assignment_id, ErrorClass::permanent,
                                 id() + ": work item not accepted by the vendor", std::nullopt});
      }
    }
  }

  // Requisition -> matches -> engagements for (domain, expertise), once per process.
  std::vector<Engagement> ensure_engagements(const std::string& domain, Expertise expertise) {
    std::lock_guard lock(mutex_);
    auto key = std::make_pair(domain, expertise);
    if (auto it = engagements_.find(key); it != engagements_.end()) return it->second;

    const std::string tier(to_string(expertise));
    json requisition = {
        {"title", "labelbroker: " + domain + " (" + tier + ")"},
        {"domain", domain},
        {"expertise", tier},
        {"skills", options_.skills},
        // The vendor's wire format takes dollars as a JSON number.
        {"hourly_rate_max_usd", static_cast<double>(options_.hourly_rate_max_micros) / 1e6},
        {"weekly_cap_hours", options_.weekly_cap_hours},
        {"headcount", options_.headcount},
        {"contract", "hourly"},
        {"callback_url", callback_url_},
    };
    auto created =
        client_.send_sync(post(url("/requisitions"), requisition.dump(), key_for("req", domain + "/" + tier)));
    if (!succeeded(created)) throw classify_failure(created, id(), "create requisition");
    auto req = parse_body(*created.response);
    auto req_id = req ? string_field(*req, "id") : std::nullopt;
    if (!req_id) throw VendorError(ErrorClass::retryable, id() + ": create requisition: no id in the answer");

    auto matched = client_.send_sync(get(url("/requisitions/" + url_encode(*req_id) + "/matches")));
    if (!succeeded(matched)) throw classify_failure(matched, id(), "list matches");
    auto matches = parse_body(*matched.response);
    if (!matches || !matches->is_array()) throw malformed("matches");

    // Best domain score first, within the rate cap.
    struct Candidate {
      std::string expert_id;
      double score;
      std::int64_t rate;
    };
    std::vector<Candidate> candidates;
    for (const auto& m : *matches) {
      auto expert = string_field(m, "expert_id");
      auto rate = usd_field(m, "hourly_rate_usd");
      if (!expert || !rate || *rate > options_.hourly_rate_max_micros) continue;
      double score = 0;
      if (auto scores = m.find("domain_scores"); scores != m.end()) score = number_field(*scores, domain).value_or(0);
      candidates.push_back({*expert, score, *rate});
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
    std::vector<Engagement> engaged;
    for (const auto& c : candidates) {
      if (static_cast<int>(engaged.size()) >= options_.headcount) break;
      auto outcome = client_.send_sync(post(url("/engagements"),
                                            json{{"requisition_id", *req_id}, {"expert_id", c.expert_id}}.dump(),
                                            key_for("eng", *req_id + "/" + c.expert_id)));
      if (outcome.response && outcome.response->status == 422) continue;  // filled or over the cap: next
      if (!succeeded(outcome)) throw classify_failure(outcome, id(), "engage expert " + c.expert_id);
      auto body = parse_body(*outcome.response);
      auto engagement_id = body ? string_field(*body, "id") : std::nullopt;
      if (!engagement_id) throw malformed("engagement without id");
      engaged.push_back({*engagement_id, usd_field(*body, "hourly_rate_usd").value_or(c.rate)});
    }
    if (engaged.empty())
      throw VendorError(ErrorClass::capacity, id() + ": no expert for " + domain + " within the rate cap");
    engagements_[key] = engaged;
    for (const auto& e : engaged) rates_[e.id] = e.hourly_rate_micros;
    return engaged;
  }

  UnitResult unit_result(const json& item) const {
    UnitResult r;
    auto item_id = string_field(item, "id");
    if (!item_id) throw malformed("work item without id");
    r.vendor_task_id = *item_id;
    r.assignment_id = string_field(item, "ref").value_or("");
    r.status = status_of(string_field(item, "status").value_or("queued"));
    if (r.status != UnitStatus::completed) return r;
    r.answer = string_field(item, "answer");
    if (!r.answer) throw malformed("done work item " + r.vendor_task_id + " has no answer");
    auto minutes = number_field(item, "minutes_spent");
    if (minutes && *minutes >= 0) r.time_spent = std::chrono::milliseconds(std::llround(*minutes * 60000));
    r.cost_micros = usd_field(item, "cost_usd");
    if (!r.cost_micros && minutes) {
      std::lock_guard lock(mutex_);
      if (auto rate = rates_.find(string_field(item, "engagement_id").value_or("")); rate != rates_.end())
        r.cost_micros = std::llround(*minutes * static_cast<double>(rate->second) / 60.0);
    }
    r.completed_at = common::parse_rfc3339(string_field(item, "completed_at").value_or(""));
    return r;
  }

  VendorError malformed(const std::string& what) const { return malformed_response(id(), what); }

  CommonSettings settings_;
  Options options_;
  std::string callback_url_;
  std::string authorization_;
  HttpClient client_;
  mutable std::mutex mutex_;  // guards engagements_ and rates_
  std::map<std::pair<std::string, Expertise>, std::vector<Engagement>> engagements_;
  std::map<std::string, std::int64_t> rates_;
};

}  // namespace

std::unique_ptr<VendorAdapter> make_adapter(const config::VendorConfig& vendor, const AdapterContext& context) {
  config::JsonReader reader(vendor.settings, vendor.path, context.config_source, context.env);
  CommonSettings settings = read_common_settings(reader, vendor);
  Options options;
  std::string rate;
  reader.require("hourly_rate_max");
  reader.string("hourly_rate_max", rate);
  auto micros = common::parse_usd_micros(rate);
  if (!micros || *micros == 0)
    reader.fail(reader.child_path("hourly_rate_max"), "expected a positive decimal USD amount such as \"150.00\"");
  options.hourly_rate_max_micros = *micros;
  reader.integer("weekly_cap_hours", options.weekly_cap_hours, 1, 168);
  reader.integer("headcount", options.headcount, 1, 100);
  reader.integer("expected_minutes_per_item", options.expected_minutes_per_item, 1, 24 * 60);
  reader.string_list("skills", options.skills);
  reader.finish();
  return std::make_unique<MercorAdapter>(std::move(settings), std::move(options), context);
}

}  // namespace labelbroker::vendors::mercor
