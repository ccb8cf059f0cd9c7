#include "api/metrics_routes.hpp"

#include <algorithm>
#include <array>
#include <set>

#include "api/auth.hpp"
#include "common/build_info.hpp"
#include "common/log.hpp"
#include "metrics/exposition.hpp"
#include "metrics/process_metrics.hpp"

namespace labelbroker::api {
namespace {

using metrics::Type;
using metrics::Writer;

constexpr std::array<const char*, 7> kJobStatuses = {"draft",  "queued",   "running",         "completed",
                                                     "failed", "canceled", "budget_exhausted"};
constexpr std::array<const char*, 4> kInFlightStates = {"queued", "paused", "sending", "submitted"};
constexpr std::array<vendors::ErrorClass, jobs::VendorBook::kErrorClasses> kErrorClasses = {
    vendors::ErrorClass::retryable, vendors::ErrorClass::permanent, vendors::ErrorClass::duplicate,
    vendors::ErrorClass::capacity, vendors::ErrorClass::auth};
constexpr std::array<routing::BreakerState, 3> kBreakerStates = {
    routing::BreakerState::closed, routing::BreakerState::open, routing::BreakerState::half_open};

double dollars(std::int64_t micros) {
  return static_cast<double>(micros) / 1e6;
}

}  // namespace

MetricsService::MetricsService(db::ConnectionPool& pool, jobs::Dispatch& dispatch, const metrics::HttpMetrics* http,
                               config::MetricsConfig config, config::QualityConfig quality)
    : pool_(pool), dispatch_(dispatch), http_(http), config_(std::move(config)), quality_(quality) {}

MetricsService::~MetricsService() {
  stop();
}

void MetricsService::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void MetricsService::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void MetricsService::run() {
  while (true) {
    refresh_now();
    std::unique_lock lock(mutex_);
    if (wake_.wait_for(lock, config_.refresh, [this] { return stopping_; })) return;
  }
}

bool MetricsService::refresh_now() {
  const auto started = std::chrono::steady_clock::now();
  try {
    auto snapshot = std::make_shared<Snapshot>();
    snapshot->stats = pool_.run([](auto& c) { return db::load_cluster_stats(c); });
    snapshot->taken_at = std::chrono::steady_clock::now();
    snapshot->duration_seconds = std::chrono::duration<double>(snapshot->taken_at - started).count();
    snapshot_.store(std::move(snapshot));
    return true;
  } catch (const std::exception& e) {
    refresh_errors_.fetch_add(1, std::memory_order_relaxed);
    common::log::warn("metrics refresh failed; /metrics keeps the last reading", {{"error", e.what()}});
    return false;
  }
}

std::string MetricsService::render() const {
  std::string page;
  page.reserve(last_size_.load(std::memory_order_relaxed) + 4096);
  Writer out(page);

  out.family("labelbroker_build_info", Type::gauge, "Always 1; the labels say which build this process runs.");
  out.sample("labelbroker_build_info", {{"version", common::build_version()}, {"commit", common::build_commit()}}, 1.0);

  if (http_) http_->render(out);

  // ---- this process ----
  const auto statuses = dispatch_.book().statuses();
  out.family("labelbroker_vendor_breaker_state", Type::gauge,
             "This process's circuit breaker per vendor: 1 for the state it is in, 0 for the others.");
  for (const auto& v : statuses)
    for (auto state : kBreakerStates)
      out.sample("labelbroker_vendor_breaker_state", {{"vendor", v.id}, {"state", routing::to_string(state)}},
                 v.breaker == state ? 1.0 : 0.0);
  out.family("labelbroker_vendor_errors_total", Type::counter,
             "Failed vendor calls seen by this process (submit, poll, cancel), by error class; a unit the "
             "vendor refused within an accepted batch counts once.");
  for (const auto& v : statuses)
    for (auto c : kErrorClasses)
      out.sample("labelbroker_vendor_errors_total", {{"vendor", v.id}, {"class", vendors::to_string(c)}},
                 v.errors[static_cast<std::size_t>(c)]);

  const auto pool = pool_.stats();
  out.family("labelbroker_db_pool_connections", Type::gauge,
             "Open database connections of this process's pool, by state.");
  out.sample("labelbroker_db_pool_connections", {{"state", "in_use"}}, static_cast<std::uint64_t>(pool.in_use));
  out.sample("labelbroker_db_pool_connections", {{"state", "idle"}},
             static_cast<std::uint64_t>(pool.open > pool.in_use ? pool.open - pool.in_use : 0));
  out.family("labelbroker_db_pool_size", Type::gauge, "The most connections the pool may open.");
  out.sample("labelbroker_db_pool_size", {}, static_cast<std::uint64_t>(pool.size));
  out.family("labelbroker_db_pool_waiting", Type::gauge, "Threads waiting for a pooled connection now.");
  out.sample("labelbroker_db_pool_waiting", {}, static_cast<std::uint64_t>(pool.waiting));

  // ---- the cluster, from the last snapshot ----
  const auto snapshot = snapshot_.load();
  out.family("labelbroker_metrics_snapshot_errors_total", Type::counter,
             "Refreshes of the database snapshot that failed (the previous snapshot is kept).");
  out.sample("labelbroker_metrics_snapshot_errors_total", {}, refresh_errors_.load(std::memory_order_relaxed));
  if (snapshot) {
    const auto& s = snapshot->stats;
    out.family("labelbroker_metrics_snapshot_age_seconds", Type::gauge,
               "Seconds since the database numbers on this page were read.");
    out.sample("labelbroker_metrics_snapshot_age_seconds", {},
               std::chrono::duration<double>(std::chrono::steady_clock::now() - snapshot->taken_at).count());
    out.family("labelbroker_metrics_snapshot_duration_seconds", Type::gauge,
               "How long reading the last database snapshot took.");
    out.sample("labelbroker_metrics_snapshot_duration_seconds", {}, snapshot->duration_seconds);

    out.family("labelbroker_jobs", Type::gauge, "Jobs by status, all teams.");
    for (const char* status : kJobStatuses) {
      auto it = s.jobs_by_status.find(status);
      out.sample("labelbroker_jobs", {{"status", status}},
                 static_cast<std::uint64_t>(it == s.jobs_by_status.end() ? 0 : it->second));
    }

    // Configured vendors first (every series present, zeros included), then any other vendor the
    // database still has work or history for.
    std::vector<std::string> ids;
    for (const auto& v : statuses) ids.push_back(v.id);
    const std::set<std::string> configured(ids.begin(), ids.end());
    for (const auto& [id, stats] : s.vendors)
      if (!configured.count(id)) ids.push_back(id);
    static const db::VendorClusterStats kNone;
    auto vendor = [&](const std::string& id) -> const db::VendorClusterStats& {
      auto it = s.vendors.find(id);
      return it == s.vendors.end() ? kNone : it->second;
    };
    auto count = [](const std::map<std::string, std::int64_t>& m, const char* key) {
      auto it = m.find(key);
      return static_cast<std::uint64_t>(it == m.end() ? 0 : it->second);
    };

    out.family("labelbroker_assignments_in_flight", Type::gauge,
               "Assignments not yet finished, by vendor and state (queued, paused for budget, sending, "
               "submitted to the vendor).");
    for (const auto& id : ids)
      for (const char* state : kInFlightStates)
        out.sample("labelbroker_assignments_in_flight", {{"vendor", id}, {"state", state}},
                   count(vendor(id).assignments, state));
    out.family("labelbroker_dispatch_queue_depth", Type::gauge,
               "Assignments queued for a vendor and not yet claimed for sending.");
    for (const auto& id : ids)
      out.sample("labelbroker_dispatch_queue_depth", {{"vendor", id}}, count(vendor(id).assignments, "queued"));

    out.family("labelbroker_ledger_held_dollars", Type::gauge,
               "US dollars held for work in flight this UTC month, all teams (from micro-dollar totals).");
    out.sample("labelbroker_ledger_held_dollars", {}, dollars(s.team_held_micros_month));
    out.family("labelbroker_ledger_spent_dollars", Type::gauge,
               "US dollars charged by vendors this UTC month, all teams (from micro-dollar totals).");
    out.sample("labelbroker_ledger_spent_dollars", {}, dollars(s.team_spent_micros_month));
    out.family("labelbroker_vendor_spend_dollars", Type::gauge, "US dollars a vendor charged this UTC month.");
    for (const auto& id : ids)
      out.sample("labelbroker_vendor_spend_dollars", {{"vendor", id}}, dollars(vendor(id).spent_micros_month));
    out.family("labelbroker_vendor_held_dollars", Type::gauge,
               "US dollars held for a vendor's work in flight this UTC month.");
    for (const auto& id : ids)
      out.sample("labelbroker_vendor_held_dollars", {{"vendor", id}}, dollars(vendor(id).held_micros_month));

    out.family("labelbroker_vendor_quality_estimate", Type::gauge,
               "A vendor's gold accuracy, posterior mean under the configured Beta prior, all teams and time.");
    for (const auto& id : ids) {
      const auto& v = vendor(id);
      const double mean = (quality_.prior_alpha + static_cast<double>(v.gold_correct)) /
                          (quality_.prior_alpha + quality_.prior_beta + static_cast<double>(v.gold_n));
      out.sample("labelbroker_vendor_quality_estimate", {{"vendor", id}}, mean);
    }
    out.family("labelbroker_vendor_gold_answers_total", Type::counter,
               "Gold answers a vendor gave (the evidence behind its quality estimate), all teams.");
    for (const auto& id : ids)
      out.sample("labelbroker_vendor_gold_answers_total", {{"vendor", id}},
                 static_cast<std::uint64_t>(vendor(id).gold_n));
    out.family("labelbroker_vendor_gold_correct_total", Type::counter, "Gold answers a vendor got right, all teams.");
    for (const auto& id : ids)
      out.sample("labelbroker_vendor_gold_correct_total", {{"vendor", id}},
                 static_cast<std::uint64_t>(vendor(id).gold_correct));

    std::int64_t judgments = 0;
    for (const auto& id : ids) judgments += vendor(id).judgments_24h;
    out.family("labelbroker_vendor_share", Type::gauge,
               "A vendor's share (0-1) of the judgments of the last 24 hours, all teams; 0 when there were none.");
    for (const auto& id : ids)
      out.sample("labelbroker_vendor_share", {{"vendor", id}},
                 judgments > 0 ? static_cast<double>(vendor(id).judgments_24h) / static_cast<double>(judgments) : 0.0);
  }

  metrics::render_process_metrics(out);
  last_size_.store(page.size(), std::memory_order_relaxed);
  return page;
}

void register_metrics_route(http::Router& router, db::ConnectionPool& pool, MetricsService& metrics) {
  auto page = [&metrics] {
    http::Response r = http::Response::text(200, metrics.render(), kMetricsContentType);
    r.headers.set("Cache-Control", "no-store");
    return r;
  };
  const bool require_key = metrics.config().require_key;
  // The page comes from memory (about 50 us for 50 vendors), so it is answered on the I/O thread
  // without the hand-off to a worker; only a key that is not in the cache sends the request to
  // the worker pool, where require_role may ask the database.
  http::RouteOptions options;
  options.fast = [page, require_key](http::Request& request) -> std::optional<http::Response> {
    if (require_key && !cached_caller(request, auth::Role::viewer)) return std::nullopt;
    return page();
  };
  if (require_key)
    router.add("GET", "/metrics",
               require_role(pool, auth::Role::viewer, [page](http::Request&, const Caller&) { return page(); }),
               options);
  else
    router.add(
        "GET", "/metrics", [page](http::Request&) { return page(); }, options);
}

}  // namespace labelbroker::api
