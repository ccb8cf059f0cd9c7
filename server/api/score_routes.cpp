#include "api/score_routes.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "api/auth.hpp"
#include "api/view_cache.hpp"
#include "common/money.hpp"
#include "db/quality_store.hpp"
#include "http/problem.hpp"
#include "quality/scores.hpp"

namespace labelbroker::api {
namespace {

using json = nlohmann::json;

const std::vector<std::pair<std::string, std::optional<int>>> kWindows = {
    {"24h", 24}, {"7d", 7 * 24}, {"30d", 30 * 24}, {"all", std::nullopt}};

json optional_number(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }
json optional_micros(const std::optional<std::int64_t>& v) { return v ? json(*v) : json(nullptr); }
json optional_usd(const std::optional<std::int64_t>& v) { return v ? json(common::format_usd(*v)) : json(nullptr); }

std::string join(const std::vector<std::string>& values) {
  std::string out;
  for (const auto& v : values) out += (out.empty() ? "" : ", ") + v;
  return out;
}

// The filters both views take, checked against what the broker knows: unknown values are 400
// with the allowed ones, so a typo never silently shows an empty dashboard.
struct Filters {
  std::string window = "7d";
  db::RollupFilter rollup;
};

std::optional<http::Response> parse_filters(const http::Request& request, db::ConnectionPool& pool,
                                            const vendors::VendorSet& vendors, bool allow_domain, Filters& out) {
  std::vector<http::FieldError> errors;
  std::set<std::string> known = {"window", "task_type", "expertise"};
  if (allow_domain) known.insert("domain");
  for (const auto& [name, value] : request.query)
    if (!known.count(name)) errors.push_back({"/query/" + http::json_pointer_escape(name), "unknown parameter"});

  if (auto w = request.query_param("window")) {
    out.window = std::string(*w);
    bool found = false;
    std::vector<std::string> allowed;
    for (const auto& [name, hours] : kWindows) {
      allowed.push_back(name);
      if (name == out.window) found = true;
    }
    if (!found) errors.push_back({"/query/window", "unknown window '" + out.window + "'; allowed: " + join(allowed)});
  }
  for (const auto& [name, hours] : kWindows)
    if (name == out.window) out.rollup.window_hours = hours;

  if (allow_domain) {
    if (auto d = request.query_param("domain")) {
      // Known domains: those vendors declare, "general", and any that has measurements (a
      // vendor that declares no domains takes every domain).
      std::set<std::string> domains = {"general"};
      for (const auto& adapter : vendors.all())
        for (const auto& domain : adapter->capabilities().domains) domains.insert(domain);
      const std::string domain(*d);
      if (!domains.count(domain) && !pool.run([&](pqxx::connection& c) { return db::rollups_have_domain(c, domain); })) {
        for (const auto& seen : pool.run([](pqxx::connection& c) { return db::rollup_domains(c); })) domains.insert(seen);
        errors.push_back({"/query/domain", "unknown domain '" + domain + "'; allowed: " +
                                               join(std::vector<std::string>(domains.begin(), domains.end()))});
      }
      out.rollup.domain = domain;
    }
  }
  if (auto t = request.query_param("task_type")) {
    if (!vendors::parse_task_type(*t))
      errors.push_back({"/query/task_type",
                        "unknown task type '" + std::string(*t) + "'; allowed: classification, preference, rating"});
    out.rollup.task_type = std::string(*t);
  }
  if (auto e = request.query_param("expertise")) {
    if (!vendors::parse_expertise(*e))
      errors.push_back(
          {"/query/expertise", "unknown expertise '" + std::string(*e) + "'; allowed: general, skilled, expert"});
    out.rollup.expertise = std::string(*e);
  }
  if (errors.empty()) return std::nullopt;
  return http::problem(400, "invalid-query", "Invalid query", "Some query parameters are not valid.", errors);
}

json filters_json(const Filters& f) {
  return {{"window", f.window},
          {"domain", f.rollup.domain ? json(*f.rollup.domain) : json(nullptr)},
          {"task_type", f.rollup.task_type ? json(*f.rollup.task_type) : json(nullptr)},
          {"expertise", f.rollup.expertise ? json(*f.rollup.expertise) : json(nullptr)}};
}

json scores_json(const quality::ScoreReport& report, const Filters& filters, const config::QualityConfig& quality,
                 const db::TeamActivity& activity, jobs::Dispatch& dispatch) {
  std::map<std::string, routing::BreakerState> breakers;
  for (const auto& status : dispatch.book().statuses()) breakers[status.id] = status.breaker;
  json vendors = json::array();
  for (const auto& v : report.vendors) {
    const auto breaker = breakers.find(v.vendor_id);
    const auto month = activity.month_spend_micros.find(v.vendor_id);
    const std::int64_t month_spend = month == activity.month_spend_micros.end() ? 0 : month->second;
    const auto [enabled, weight] = dispatch.book().effective(v.vendor_id);
    json agreement = json::array();
    for (const auto& p : v.agreement)
      agreement.push_back({{"vendor", p.other_vendor},
                           {"items", p.items},
                           {"agreement", p.agreement},
                           {"kappa", optional_number(p.kappa)}});
    vendors.push_back(
        {{"vendor", v.vendor_id},
         {"gold_accuracy",
          {{"mean", v.gold.mean}, {"lower", v.gold.lower}, {"upper", v.gold.upper}, {"n", v.gold.n}, {"correct", v.gold.correct}}},
         {"ds_accuracy", optional_number(v.ds_accuracy)},
         {"ds_judgments", v.ds_judgments},
         {"agreement", agreement},
         {"cost_per_item_micros", optional_micros(v.cost_per_item_micros)},
         {"cost_per_item_usd", optional_usd(v.cost_per_item_micros)},
         {"cost_per_correct_label_micros", optional_micros(v.cost_per_correct_label_micros)},
         {"cost_per_correct_label_usd", optional_usd(v.cost_per_correct_label_micros)},
         {"latency_ms", {{"p50", optional_number(v.latency_p50_ms)}, {"p95", optional_number(v.latency_p95_ms)}}},
         {"on_time_rate", optional_number(v.on_time_rate)},
         {"error_rate", optional_number(v.error_rate)},
         {"judgments", v.judgments},
         {"items", v.items},
         {"share", v.share},
         {"spend_micros", v.spend_micros},
         {"spend_usd", common::format_usd(v.spend_micros)},
         {"spend_month_micros", month_spend},
         {"spend_month_usd", common::format_usd(month_spend)},
         {"breaker",
          {{"state", routing::to_string(breaker == breakers.end() ? routing::BreakerState::closed : breaker->second)}}},
         {"enabled", enabled},
         {"draining", !enabled || weight <= 0}});
  }
  json shares = json::object();
  for (const auto& [vendor, share] : report.market.shares) shares[vendor] = share;
  return {{"filters", filters_json(filters)},
          {"jobs_in_flight", activity.jobs_in_flight},
          {"prior", {{"alpha", quality.prior_alpha}, {"beta", quality.prior_beta}}},
          {"credible_interval", 0.90},
          {"vendors", vendors},
          {"market",
           {{"items", report.market.items},
            {"shares", shares},
            {"hhi", report.market.hhi},
            {"effective_vendors", report.market.effective_vendors}}}};
}

// Buckets of one domain (or of all, with an empty domain) as [{start, items, shares}].
json series_json(const std::vector<db::ShareBucket>& buckets, const std::string& domain) {
  std::map<std::string, std::map<std::string, std::int64_t>> by_start;
  for (const auto& b : buckets)
    if (domain.empty() || b.domain == domain) by_start[b.start][b.vendor_id] += b.items;
  json out = json::array();
  for (const auto& [start, vendors] : by_start) {
    std::int64_t total = 0;
    for (const auto& [vendor, n] : vendors) total += n;
    json shares = json::object();
    for (const auto& [vendor, n] : vendors) shares[vendor] = total > 0 ? static_cast<double>(n) / total : 0.0;
    out.push_back({{"start", start}, {"items", total}, {"shares", shares}});
  }
  return out;
}

// Hours for a day's window, days for anything longer.
bool daily_buckets(const Filters& f) { return !f.rollup.window_hours || *f.rollup.window_hours > 24; }

json concentration_json(const std::vector<db::DomainVolume>& volumes, const std::vector<db::ShareBucket>& series,
                        const vendors::VendorSet& vendor_set, const Filters& filters, const jobs::Dispatch& dispatch,
                        const std::string& team) {
  std::map<std::string, std::map<std::string, std::int64_t>> by_domain;
  std::map<std::string, std::int64_t> overall;
  for (const auto& v : volumes) {
    by_domain[v.domain][v.vendor_id] += v.items;
    overall[v.vendor_id] += v.items;
  }
  for (const auto& b : series) by_domain.try_emplace(b.domain);  // a domain seen only earlier in the chart
  auto market = [&](const std::map<std::string, std::int64_t>& items) {
    std::vector<std::string> ids;
    std::vector<std::int64_t> counts;
    for (const auto& adapter : vendor_set.all()) {
      ids.push_back(adapter->id());
      auto it = items.find(adapter->id());
      counts.push_back(it == items.end() ? 0 : it->second);
    }
    for (const auto& [id, n] : items)
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) {  // a vendor no longer configured
        ids.push_back(id);
        counts.push_back(n);
      }
    const auto m = quality::market_concentration(counts);
    json vendors = json::array();
    for (std::size_t i = 0; i < ids.size(); ++i)
      vendors.push_back({{"vendor", ids[i]}, {"items", counts[i]}, {"share", m.shares[i]}});
    return json{{"items", m.total}, {"vendors", vendors}, {"hhi", m.hhi}, {"effective_vendors", m.effective_vendors}};
  };
  json domains = json::array();
  for (const auto& [domain, items] : by_domain) {
    auto d = market(items);
    d["domain"] = domain;
    d["cap"] = dispatch.share_cap(domain, team);
    d["series"] = series_json(series, domain);
    domains.push_back(std::move(d));
  }
  auto all = market(overall);
  all["cap"] = dispatch.share_cap("", team);
  all["series"] = series_json(series, "");
  return {{"filters", filters_json(filters)},
          {"bucket", daily_buckets(filters) ? "day" : "hour"},
          {"overall", all},
          {"domains", domains}};
}

http::Response cached_response(const http::Request& request, const ViewCache::Entry& entry) {
  http::Response response;
  if (http::if_none_match(request, entry.etag)) {
    response.status = 304;
  } else {
    response = http::Response::json(200, entry.body);
  }
  response.headers.set("ETag", entry.etag);
  response.headers.set("Cache-Control", "private, no-cache");
  return response;
}

std::string cache_key(const Caller& caller, const http::Request& request) {
  return std::to_string(caller.team_id) + " " + request.target;
}

}  // namespace

void register_score_routes(http::Router& router, db::ConnectionPool& pool, const vendors::VendorSet& vendors,
                           jobs::Dispatch& dispatch, const config::QualityConfig& quality) {
  // Computed views are reused per team and query: dashboards poll every few seconds, and the
  // rollups behind them change at the maintenance loop's pace anyway.
  auto cache = std::make_shared<ViewCache>(quality.scores_cache);
  // A fresh view for a key already in the cache is answered on the I/O thread, without the
  // hand-off to a worker (about half the cost of such a request); anything else takes the
  // normal path below.
  http::RouteOptions options;
  options.fast = [cache](http::Request& request) -> std::optional<http::Response> {
    auto caller = cached_caller(request, auth::Role::viewer);
    if (!caller) return std::nullopt;
    auto entry = cache->fresh(cache_key(*caller, request));
    if (!entry) return std::nullopt;
    return cached_response(request, *entry);
  };
  router.add("GET", "/v1/vendors/scores",
             require_role(pool, auth::Role::viewer, [&pool, &vendors, &dispatch, quality, cache](
                                                        http::Request& request, const Caller& caller) {
               Filters filters;
               if (auto bad = parse_filters(request, pool, vendors, true, filters)) return *bad;
               filters.rollup.team_id = caller.team_id;
               auto entry = cache->get(cache_key(caller, request), [&] {
                 const auto totals =
                     pool.run([&](pqxx::connection& c) { return db::load_rollups(c, filters.rollup); });
                 const auto activity =
                     pool.run([&](pqxx::connection& c) { return db::load_team_activity(c, caller.team_id); });
                 // Every configured vendor appears, in configuration order, with or without data.
                 std::vector<quality::VendorTotals> listed;
                 for (const auto& adapter : vendors.all()) {
                   quality::VendorTotals v;
                   v.vendor_id = adapter->id();
                   for (const auto& t : totals.vendors)
                     if (t.vendor_id == v.vendor_id) v = t;
                   listed.push_back(std::move(v));
                 }
                 const auto report =
                     quality::compute_scores(listed, totals.pairs, {quality.prior_alpha, quality.prior_beta});
                 return scores_json(report, filters, quality, activity, dispatch).dump();
               });
               return cached_response(request, *entry);
             }),
             options);
  router.add("GET", "/v1/concentration",
             require_role(pool, auth::Role::viewer, [&pool, &vendors, &dispatch, cache](http::Request& request,
                                                                                       const Caller& caller) {
               Filters filters;
               if (auto bad = parse_filters(request, pool, vendors, false, filters)) return *bad;
               filters.rollup.team_id = caller.team_id;
               auto entry = cache->get(cache_key(caller, request), [&] {
                 const auto volumes =
                     pool.run([&](pqxx::connection& c) { return db::load_domain_volumes(c, filters.rollup); });
                 const auto series = pool.run([&](pqxx::connection& c) {
                   return db::load_share_series(c, filters.rollup, daily_buckets(filters));
                 });
                 return concentration_json(volumes, series, vendors, filters, dispatch, caller.team).dump();
               });
               return cached_response(request, *entry);
             }),
             options);
}

}  // namespace labelbroker::api
