// Mercor-style vendor: requisitions -> matches -> engagements -> work items, hourly billing with a
// weekly cap (our own published design; see docs/vendor-sim.md).
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "common/crypto.hpp"
#include "vendors/sim/engine.hpp"

namespace labelbroker::vendors::sim {
namespace {

using nlohmann::json;
using std::chrono::days;
using std::chrono::sys_days;
using std::chrono::system_clock;

ApiError invalid(std::string message) {
  return ApiError{400, "invalid_request", std::move(message), -1};
}

ApiError unprocessable(std::string code, std::string message) {
  return ApiError{422, std::move(code), std::move(message), -1};
}

ApiError not_found(std::string what) {
  return ApiError{404, "not_found", std::move(what) + " not found", -1};
}

// ISO 8601 week ("2026-W48") and the Monday 00:00 UTC that starts it.
struct IsoWeek {
  int year = 0;
  unsigned week = 0;
  std::string label() const {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-W%02u", year, week);
    return buf;
  }
};

sys_days monday_of_week1(int year) {
  const sys_days jan4{std::chrono::year{year} / std::chrono::January / 4};
  return jan4 - days{(std::chrono::weekday{jan4}.c_encoding() + 6) % 7};
}

IsoWeek iso_week(system_clock::time_point t) {
  const sys_days d = std::chrono::floor<days>(t);
  const sys_days thursday = d + days{3 - static_cast<int>((std::chrono::weekday{d}.c_encoding() + 6) % 7)};
  const int year = static_cast<int>(std::chrono::year_month_day{thursday}.year());
  return {year, static_cast<unsigned>((thursday - monday_of_week1(year)).count() / 7 + 1)};
}

std::optional<IsoWeek> parse_iso_week(std::string_view s) {
  if (s.size() != 8 || s[4] != '-' || s[5] != 'W') return std::nullopt;
  for (std::size_t i : {0u, 1u, 2u, 3u, 6u, 7u}) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
  }
  IsoWeek w{std::stoi(std::string(s.substr(0, 4))), static_cast<unsigned>(std::stoi(std::string(s.substr(6, 2))))};
  if (w.week < 1) return std::nullopt;
  // Week 53 exists only in some years: round-trip through its Monday.
  const IsoWeek back = iso_week(monday_of_week1(w.year) + days{7 * (w.week - 1)});
  if (back.year != w.year || back.week != w.week) return std::nullopt;
  return w;
}

system_clock::time_point week_start(const IsoWeek& w) {
  return monday_of_week1(w.year) + days{7 * (w.week - 1)};
}

double usd_number(std::int64_t micros) {
  return static_cast<double>(micros) / 1e6;
}

class MercorApi final : public KindApi {
 public:
  MercorApi(Engine& engine, Vendor& vendor) : engine_(engine), vendor_(vendor), prefix_("/" + vendor.spec.id + "/v1") {}

  bool authorized(const http::Request& request) const override {
    return bearer_auth_matches(request, vendor_.spec.api_key);
  }

  http::Response error(const ApiError& e) const override {
    auto r = json_response(e.status, {{"error", {{"code", e.code}, {"message", e.message}}}});
    if (e.retry_after_s >= 0) r.headers.set("Retry-After", std::to_string(e.retry_after_s));
    return r;
  }

  void reset() override {
    requisitions_.clear();
    engagements_.clear();
    idempotency_.clear();
  }

  void register_routes(http::Router& router) override {
    post(router, "/requisitions", [this](http::Request& r) { return create_requisition(r); });
    get(router, "/requisitions/{id}", [this](http::Request& r) {
      return json_response(200, requisition_json(find_requisition(r.path_param("id"))));
    });
    get(router, "/requisitions/{id}/matches", [this](http::Request& r) { return matches(r); });
    post(router, "/engagements", [this](http::Request& r) { return create_engagement(r); });
    get(router, "/engagements/{id}",
        [this](http::Request& r) { return json_response(200, engagement_json(find_engagement(r.path_param("id")))); });
    post(router, "/engagements/{id}/end", [this](http::Request& r) { return end_engagement(r); });
    post(router, "/engagements/{id}/work-items", [this](http::Request& r) { return create_work_items(r); });
    get(router, "/engagements/{id}/timesheets", [this](http::Request& r) { return timesheet(r); });
    get(router, "/work-items/{id}",
        [this](http::Request& r) { return json_response(200, item_json(find_item(r.path_param("id")))); });
    post(router, "/work-items/{id}/cancel", [this](http::Request& r) { return cancel_item(r); });
  }

  std::string on_complete(WorkUnit& unit) override {
    Engagement& e = engagements_.at(unit.parent);
    const Requisition& req = requisitions_.at(e.requisition_id);
    const IsoWeek week = iso_week(unit.completed_at);
    auto& logged = e.minutes_by_week[week.label()];
    if (req.contract == "deliverable") {
      unit.charged_micros = req.deliverable_price_micros;
    } else {
      // Only minutes inside the weekly cap are billable.
      const double cap = e.weekly_cap_hours * 60.0;
      const double billable = std::clamp(cap - logged, 0.0, unit.minutes_spent);
      unit.charged_micros = std::llround(billable * static_cast<double>(e.hourly_rate_micros) / 60.0);
    }
    logged += unit.minutes_spent;
    return req.callback_url;
  }

  Callback make_callback(const WorkUnit& unit, const std::string& url) override {
    Callback cb;
    cb.url = url;
    cb.body = json{{"event", "work_item.done"}, {"work_item", item_json(unit)}}.dump();
    cb.headers = {{"X-Signature", "sha256=" + common::hmac_sha256_hex(vendor_.spec.callback_secret, cb.body)}};
    cb.timestamp_header = "X-Timestamp";
    return cb;
  }

 private:
  struct Requisition {
    std::string id;
    json request;
    std::string domain, expertise, contract, callback_url;
    std::int64_t rate_max_micros = 0;
    std::int64_t deliverable_price_micros = 0;
    int weekly_cap_hours = 40;
    int headcount = 1;
    int engaged = 0;
    system_clock::time_point created_at;
  };
  struct Engagement {
    std::string id, requisition_id, expert_id, status = "active";
    std::int64_t hourly_rate_micros = 0;
    int weekly_cap_hours = 40;
    std::map<std::string, double> minutes_by_week;  // completed work, by ISO week
    system_clock::time_point created_at;
  };
  struct Recorded {
    std::string fingerprint;  // sha256 of method, path and body
    int status = 0;
    std::string body;
    std::string retry_after;
  };

  void get(http::Router& router, const std::string& path, std::function<http::Response(http::Request&)> handler) {
    router.add("GET", prefix_ + path, [this, h = std::move(handler)](http::Request& r) {
      return engine_.serve(vendor_, r, [&](http::Request& req) {
        std::lock_guard lock(vendor_.mutex);
        return h(req);
      });
    });
  }

  // Every POST carries an Idempotency-Key: the same key with the same request replays the first
  // answer; with a different request it is refused with 422.
  void post(http::Router& router, const std::string& path, std::function<http::Response(http::Request&)> handler) {
    router.add("POST", prefix_ + path, [this, h = std::move(handler)](http::Request& r) {
      return engine_.serve(vendor_, r, [&](http::Request& req) { return idempotent(req, h); });
    });
  }

  http::Response idempotent(http::Request& request, const std::function<http::Response(http::Request&)>& handler) {
    auto key_header = request.header("Idempotency-Key");
    if (!key_header || key_header->empty() || key_header->size() > 255)
      throw invalid("Idempotency-Key header is required on every POST (1 to 255 characters)");
    const std::string key(*key_header);
    const std::string fingerprint = common::sha256_hex(request.method + " " + request.path + "\n" + request.body);
    // Held across the handler, so two concurrent requests with one key cannot both do the work.
    std::lock_guard lock(vendor_.mutex);
    auto it = idempotency_.find(key);
    if (it != idempotency_.end()) {
      if (it->second.fingerprint != fingerprint) {
        ++vendor_.stats.idempotency_conflicts;
        throw unprocessable("idempotency_key_reused",
                            "Idempotency-Key \"" + key + "\" was already used with a different request");
      }
      ++vendor_.stats.idempotent_replays;
      auto replay = http::Response::json(it->second.status, it->second.body);
      if (!it->second.retry_after.empty()) replay.headers.set("Retry-After", it->second.retry_after);
      replay.headers.set("Idempotent-Replayed", "true");
      return replay;
    }
    http::Response response;
    try {
      response = handler(request);
    } catch (const ApiError& e) {
      response = error(e);
    }
    // Transient answers (429, 5xx) are not remembered: a retry must get a real attempt.
    if (response.status < 500 && response.status != 429) {
      Recorded rec{fingerprint, response.status, response.body, ""};
      if (auto retry_after = response.headers.get("Retry-After")) rec.retry_after = std::string(*retry_after);
      idempotency_[key] = std::move(rec);
    }
    return response;
  }

  json requisition_json(const Requisition& r) const {
    json out = r.request;
    out["id"] = r.id;
    out["status"] = r.engaged >= r.headcount ? "filled" : "open";
    out["created_at"] = rfc3339(r.created_at);
    return out;
  }

  json engagement_json(const Engagement& e) const {
    return {{"id", e.id},
            {"status", e.status},
            {"requisition_id", e.requisition_id},
            {"expert_id", e.expert_id},
            {"hourly_rate_usd", usd_number(e.hourly_rate_micros)},
            {"weekly_cap_hours", e.weekly_cap_hours},
            {"created_at", rfc3339(e.created_at)}};
  }

  json item_json(const WorkUnit& unit) const {
    const bool done = unit.state == UnitState::done;
    return {{"id", unit.id},
            {"engagement_id", unit.parent},
            {"ref", unit.doc["ref"]},
            {"task_type", unit.doc["task_type"]},
            {"status", unit_state_name(unit.state)},
            {"answer", done ? json(unit.answers.front()) : json(nullptr)},
            {"minutes_spent", done ? unit.minutes_spent : 0.0},
            {"cost_usd", done ? json(usd_string(unit.charged_micros)) : json(nullptr)},
            {"created_at", rfc3339(unit.created_at)},
            {"completed_at", done ? json(rfc3339(unit.completed_at)) : json(nullptr)}};
  }

  Requisition& find_requisition(std::string_view id) {
    auto it = requisitions_.find(std::string(id));
    if (it == requisitions_.end()) throw not_found("requisition " + std::string(id));
    return it->second;
  }
  Engagement& find_engagement(std::string_view id) {
    auto it = engagements_.find(std::string(id));
    if (it == engagements_.end()) throw not_found("engagement " + std::string(id));
    return it->second;
  }
  WorkUnit& find_item(std::string_view id) {
    WorkUnit* unit = vendor_.find(std::string(id));
    if (!unit) throw not_found("work item " + std::string(id));
    return *unit;
  }

  static std::int64_t usd_field(const json& body, const char* key, bool required) {
    if (!body.contains(key)) {
      if (required) throw invalid(std::string(key) + " is required");
      return 0;
    }
    const json& v = body[key];
    if (!v.is_number() || v.get<double>() <= 0 || v.get<double>() > 1e6)
      throw invalid(std::string(key) + " must be a positive number of US dollars");
    return std::llround(v.get<double>() * 1e6);
  }

  static std::string string_field(const json& body, const char* key, bool required, std::string fallback = "") {
    if (!body.contains(key)) {
      if (required) throw invalid(std::string(key) + " is required");
      return fallback;
    }
    if (!body[key].is_string() || body[key].get<std::string>().empty())
      throw invalid(std::string(key) + " must be a non-empty string");
    return body[key].get<std::string>();
  }

  static int int_field(const json& body, const char* key, int fallback, int min, int max) {
    if (!body.contains(key)) return fallback;
    const json& v = body[key];
    if (!v.is_number_integer() || v.get<long long>() < min || v.get<long long>() > max)
      throw invalid(std::string(key) + " must be an integer from " + std::to_string(min) + " to " +
                    std::to_string(max));
    return v.get<int>();
  }

  static json object_body(const http::Request& request) {
    json body = parse_json_body(request);
    if (!body.is_object()) throw invalid("request body must be a JSON object");
    return body;
  }

  http::Response create_requisition(http::Request& request) {
    json body = object_body(request);
    Requisition r;
    string_field(body, "title", true);
    r.domain = string_field(body, "domain", true);
    r.expertise = string_field(body, "expertise", false, "expert");
    if (body.contains("skills")) {
      if (!body["skills"].is_array()) throw invalid("skills must be an array of strings");
      for (const auto& s : body["skills"]) {
        if (!s.is_string()) throw invalid("skills must be an array of strings");
      }
    }
    r.rate_max_micros = usd_field(body, "hourly_rate_max_usd", true);
    r.weekly_cap_hours = int_field(body, "weekly_cap_hours", 40, 1, 168);
    r.headcount = int_field(body, "headcount", 1, 1, 1000);
    r.contract = string_field(body, "contract", false, "hourly");
    if (r.contract != "hourly" && r.contract != "deliverable") throw invalid("contract must be hourly or deliverable");
    r.deliverable_price_micros = usd_field(body, "deliverable_price_usd", r.contract == "deliverable");
    r.callback_url = string_field(body, "callback_url", false);
    if (!valid_callback_url(r.callback_url)) throw invalid("callback_url must be an http:// or https:// URL");
    r.request = body;
    r.request["expertise"] = r.expertise;
    r.request["contract"] = r.contract;
    r.request["weekly_cap_hours"] = r.weekly_cap_hours;
    r.request["headcount"] = r.headcount;
    r.created_at = engine_.now();
    r.id = "req_" + vendor_.new_id(20);
    const Requisition& stored = requisitions_[r.id] = std::move(r);
    return json_response(201, requisition_json(stored));
  }

  http::Response matches(http::Request& request) {
    const Requisition& r = find_requisition(request.path_param("id"));
    std::vector<const Expert*> fit;
    for (const auto& x : vendor_.spec.experts) {
      if (x.hourly_rate_micros <= r.rate_max_micros) fit.push_back(&x);
    }
    auto score = [&](const Expert* x) {
      auto it = x->domain_scores.find(r.domain);
      return it == x->domain_scores.end() ? 0.0 : it->second;
    };
    std::stable_sort(fit.begin(), fit.end(), [&](const Expert* a, const Expert* b) { return score(a) > score(b); });
    json out = json::array();
    for (const Expert* x : fit) {
      out.push_back({{"expert_id", x->id},
                     {"domain_scores", x->domain_scores},
                     {"hourly_rate_usd", usd_number(x->hourly_rate_micros)},
                     {"available_hours", x->available_hours}});
    }
    return json_response(200, out);
  }

  http::Response create_engagement(http::Request& request) {
    json body = object_body(request);
    const std::string requisition_id = string_field(body, "requisition_id", true);
    const std::string expert_id = string_field(body, "expert_id", true);
    Requisition& r = find_requisition(requisition_id);
    const Expert* expert = nullptr;
    for (const auto& x : vendor_.spec.experts) {
      if (x.id == expert_id) expert = &x;
    }
    if (!expert) throw not_found("expert " + expert_id);
    if (expert->hourly_rate_micros > r.rate_max_micros)
      throw unprocessable("rate_above_max", "expert " + expert_id + " charges more than hourly_rate_max_usd");
    if (r.engaged >= r.headcount) throw unprocessable("requisition_filled", "requisition " + r.id + " is filled");
    Engagement e;
    e.id = "eng_" + vendor_.new_id(20);
    e.requisition_id = r.id;
    e.expert_id = expert_id;
    e.hourly_rate_micros = expert->hourly_rate_micros;
    e.weekly_cap_hours = std::min(r.weekly_cap_hours, expert->available_hours);
    e.created_at = engine_.now();
    ++r.engaged;
    const Engagement& stored = engagements_[e.id] = std::move(e);
    return json_response(201, engagement_json(stored));
  }

  http::Response end_engagement(http::Request& request) {
    Engagement& e = find_engagement(request.path_param("id"));
    if (e.status != "ended") {
      e.status = "ended";
      --requisitions_.at(e.requisition_id).engaged;
      for (const auto& id : vendor_.order) {
        WorkUnit& unit = vendor_.units.at(id);
        if (unit.parent == e.id && unit.state == UnitState::queued) engine_.cancel_unit(vendor_, unit);
      }
    }
    return json_response(200, engagement_json(e));
  }

  http::Response create_work_items(http::Request& request) {
    json body = object_body(request);
    Engagement& e = find_engagement(request.path_param("id"));
    const Requisition& r = requisitions_.at(e.requisition_id);
    if (e.status != "active") throw unprocessable("engagement_not_active", "engagement " + e.id + " is " + e.status);
    if (!body.contains("items") || !body["items"].is_array() || body["items"].empty() || body["items"].size() > 1000)
      throw invalid("items must be an array of 1 to 1000 work items");
    std::vector<WorkUnit> units;
    for (std::size_t i = 0; i < body["items"].size(); ++i) {
      const json& item = body["items"][i];
      const std::string at = "items[" + std::to_string(i) + "]";
      if (!item.is_object()) throw invalid(at + " must be an object");
      WorkUnit unit;
      unit.doc = {{"ref", string_field(item, "ref", true)}, {"task_type", string_field(item, "task_type", true)}};
      if (item.contains("instructions") && !item["instructions"].is_string())
        throw invalid(at + ".instructions must be a string");
      if (item.contains("labels")) {
        if (!item["labels"].is_array()) throw invalid(at + ".labels must be an array of strings");
        for (const auto& l : item["labels"]) {
          if (!l.is_string()) throw invalid(at + ".labels must be an array of strings");
          unit.labels.push_back(l.get<std::string>());
        }
      }
      if (!item.contains("data") || !item["data"].is_object()) throw invalid(at + ".data must be an object");
      unit.task_type = unit.doc["task_type"].get<std::string>();
      unit.domain = r.domain;
      unit.expertise = r.expertise;
      unit.truth = true_label(item["data"], unit.labels);
      units.push_back(std::move(unit));
    }
    // Work beyond the weekly cap is refused as capacity: retry after the week closes.
    const auto now = engine_.now();
    const IsoWeek week = iso_week(now);
    if (r.contract == "hourly" && e.minutes_by_week[week.label()] >= e.weekly_cap_hours * 60.0) {
      const auto next_week = week_start(week) + days{7};
      const auto wait = std::chrono::duration_cast<std::chrono::seconds>(next_week - now).count();
      throw ApiError{429, "weekly_cap_reached",
                     "engagement " + e.id + " has reached its weekly cap of " + std::to_string(e.weekly_cap_hours) +
                         " hours for " + week.label(),
                     static_cast<int>(std::max<long long>(1, wait))};
    }
    engine_.check_capacity(vendor_, units.size());
    json accepted = json::array();
    for (auto& unit : units) {
      unit.id = "wi_" + vendor_.new_id(20);
      unit.parent = e.id;
      accepted.push_back({{"ref", unit.doc["ref"]}, {"work_item_id", unit.id}});
      engine_.add_unit(vendor_, std::move(unit));
    }
    return json_response(201, {{"accepted", accepted}});
  }

  http::Response cancel_item(http::Request& request) {
    WorkUnit& unit = find_item(request.path_param("id"));
    if (unit.state != UnitState::canceled && !engine_.cancel_unit(vendor_, unit))
      throw ApiError{409, "not_cancelable",
                     "work item " + unit.id + " is " + std::string(unit_state_name(unit.state)) +
                         "; only queued items can be canceled",
                     -1};
    return json_response(200, item_json(unit));
  }

  http::Response timesheet(http::Request& request) {
    Engagement& e = find_engagement(request.path_param("id"));
    const Requisition& r = requisitions_.at(e.requisition_id);
    const auto now = engine_.now();
    IsoWeek week = iso_week(now);
    if (auto v = request.query_param("week")) {
      auto parsed = parse_iso_week(*v);
      if (!parsed) throw invalid("week must be an ISO week like 2026-W48");
      week = *parsed;
    }
    const auto start = week_start(week), end = start + days{7};
    json entries = json::array();
    double minutes = 0;
    std::int64_t amount = 0;
    for (const auto& id : vendor_.order) {
      const WorkUnit& unit = vendor_.units.at(id);
      if (unit.parent != e.id || unit.state != UnitState::done || unit.completed_at < start || unit.completed_at >= end)
        continue;
      entries.push_back({{"work_item_id", unit.id}, {"minutes", unit.minutes_spent}});
      minutes += unit.minutes_spent;
      amount += unit.charged_micros;
    }
    const double billable = r.contract == "hourly" ? std::min(minutes, e.weekly_cap_hours * 60.0) : minutes;
    return json_response(200, {{"engagement_id", e.id},
                               {"week", week.label()},
                               {"entries", entries},
                               {"billable_minutes", billable},
                               {"amount_usd", usd_string(amount)},
                               {"status", now >= end ? "locked" : "open"}});
  }

  Engine& engine_;
  Vendor& vendor_;
  const std::string prefix_;
  std::unordered_map<std::string, Requisition> requisitions_;
  std::unordered_map<std::string, Engagement> engagements_;
  std::unordered_map<std::string, Recorded> idempotency_;
};

}  // namespace

std::unique_ptr<KindApi> make_mercor_api(Engine& engine, Vendor& vendor) {
  return std::make_unique<MercorApi>(engine, vendor);
}

}  // namespace labelbroker::vendors::sim
