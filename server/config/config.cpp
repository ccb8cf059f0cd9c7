#include "config/config.hpp"

#include <algorithm>

#include "config/json_reader.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace labelbroker::config {
namespace {

using nlohmann::json;

std::string strip_exception_prefix(std::string what) {
  // nlohmann messages start with "[json.exception.parse_error.101] "; operators need the rest.
  if (!what.empty() && what.front() == '[') {
    auto close = what.find("] ");
    if (close != std::string::npos) what.erase(0, close + 2);
  }
  return what;
}

}  // namespace

std::string ListenAddress::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

ListenAddress parse_listen_address(std::string_view text, const std::string& where) {
  ListenAddress out;
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw ConfigError(where + ": expected \"[ipv6]:port\", got \"" + std::string(text) + "\"");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      throw ConfigError(where + ": expected \"host:port\", got \"" + std::string(text) + "\"");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) throw ConfigError(where + ": missing host in \"" + std::string(text) + "\"");
  unsigned long n = 0;
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
      (n = std::stoul(std::string(port))) > 65535)
    throw ConfigError(where + ": port must be a number from 0 to 65535 in \"" + std::string(text) + "\"");
  out.host = std::string(host);
  out.port = static_cast<std::uint16_t>(n);
  return out;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

Config parse_config(std::string_view text, const std::string& source_name, const EnvLookup& env) {
  json root;
  try {
    root = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    throw ConfigError(source_name + ": invalid JSON: " + strip_exception_prefix(e.what()));
  }

  Config cfg;
  cfg.source = source_name;
  JsonReader top(root, "$", source_name, env);

  std::string listen;
  top.string("listen", listen);
  if (!listen.empty()) cfg.listen = parse_listen_address(listen, source_name + ": $.listen");

  {
    auto db = top.object("database");
    db.secret("url", cfg.database.url);
    db.integer("pool_size", cfg.database.pool_size, 1, 1000);
    db.millis("connect_timeout_ms", cfg.database.connect_timeout, 100, 600000);
    db.millis("statement_timeout_ms", cfg.database.statement_timeout, 0, 86400000);
    db.millis("acquire_timeout_ms", cfg.database.acquire_timeout, 1, 600000);
    db.millis("startup_wait_ms", cfg.database.startup_wait, 0, 3600000);
    db.boolean("migrate_on_start", cfg.database.migrate_on_start);
    db.finish();
  }
  {
    auto http = top.object("http");
    http.integer("io_threads", cfg.http.io_threads, 0, 256);
    http.integer("worker_threads", cfg.http.worker_threads, 1, 1024);
    http.integer("body_limit_bytes", cfg.http.body_limit_bytes, 1, std::numeric_limits<long long>::max());
    http.integer("header_limit_bytes", cfg.http.header_limit_bytes, 1024, 1024 * 1024);
    http.millis("header_timeout_ms", cfg.http.header_timeout, 1, 3600000);
    http.millis("body_timeout_ms", cfg.http.body_timeout, 1, 3600000);
    http.millis("idle_timeout_ms", cfg.http.idle_timeout, 1, 3600000);
    http.millis("write_timeout_ms", cfg.http.write_timeout, 1, 3600000);
    http.millis("drain_delay_ms", cfg.http.drain_delay, 0, 600000);
    http.millis("shutdown_grace_ms", cfg.http.shutdown_grace, 0, 3600000);
    http.finish();
  }
  {
    auto jobs = top.object("jobs");
    jobs.integer("body_limit_bytes", cfg.jobs.body_limit_bytes, 1024, std::numeric_limits<long long>::max());
    jobs.integer("max_items_per_request", cfg.jobs.max_items_per_request, 1, 100000000);
    jobs.integer("max_items_per_job", cfg.jobs.max_items_per_job, 1, 1000000000);
    jobs.finish();
  }
  {
    auto ds = top.object("datasets");
    if (ds.find("cache_dir")) {
      std::string dir;
      ds.string("cache_dir", dir);
      cfg.datasets.cache_dir = dir;
    }
    ds.finish();
  }
  {
    auto d = top.object("dispatch");
    d.boolean("enabled", cfg.dispatch.enabled);
    d.integer("workers_per_vendor", cfg.dispatch.workers_per_vendor, 1, 256);
    d.integer("plan_chunk_items", cfg.dispatch.plan_chunk_items, 1, 100000);
    d.integer("plan_ahead_items", cfg.dispatch.plan_ahead_items, 1, 100000000);
    d.millis("lease_ms", cfg.dispatch.lease, 100, 86400000);
    d.integer("max_attempts", cfg.dispatch.max_attempts, 1, 1000);
    d.millis("backoff_initial_ms", cfg.dispatch.backoff_initial, 1, 3600000);
    d.millis("backoff_max_ms", cfg.dispatch.backoff_max, 1, 86400000);
    d.millis("idle_wait_ms", cfg.dispatch.idle_wait, 1, 60000);
    d.millis("poll_after_ms", cfg.dispatch.poll_after, 0, 86400000);
    d.millis("poll_interval_ms", cfg.dispatch.poll_interval, 10, 3600000);
    d.millis("maintenance_interval_ms", cfg.dispatch.maintenance_interval, 10, 3600000);
    d.finish();
  }
  {
    auto q = top.object("quality");
    q.number("gold_rate", cfg.quality.gold_rate, 0, 1);
    q.number("prior_alpha", cfg.quality.prior_alpha, 0.001, 1e6);
    q.number("prior_beta", cfg.quality.prior_beta, 0.001, 1e6);
    q.integer("ds_max_iterations", cfg.quality.ds_max_iterations, 1, 10000);
    q.number("ds_tolerance", cfg.quality.ds_tolerance, 0, 1);
    q.millis("scores_cache_ms", cfg.quality.scores_cache, 0, 3600000);
    q.finish();
  }
  {
    auto r = top.object("routing");
    auto& rc = cfg.routing;
    r.number("max_share", rc.max_share, 0.01, 1);
    auto read_caps = [&](const std::string& key, std::map<std::string, double>& out) {
      auto caps = r.object(key);
      if (const auto* obj = r.find(key))
        for (const auto& [name, value] : obj->items()) {
          double cap = 0;
          caps.number(name, cap, 0.01, 1);
          out[name] = cap;
        }
      caps.finish();
    };
    read_caps("domain_max_share", rc.domain_max_share);
    read_caps("team_max_share", rc.team_max_share);
    r.number("min_share", rc.min_share, 0, 0.5);
    if (rc.min_share > rc.max_share) r.fail(r.child_path("min_share"), "must not exceed max_share");
    r.number("temperature", rc.temperature, 0.001, 100);
    r.number("credible", rc.credible, 0.5, 0.999);
    r.integer("share_cap_min_window", rc.share_cap_min_window, 0, 1000000000);
    long long window_hours = rc.window.count();
    r.integer("window_hours", window_hours, 1, 24 * 90);
    rc.window = std::chrono::hours(window_hours);
    r.number("evidence_discount", rc.evidence_discount, 0.5, 1);
    r.number("evidence_half_life_hours", rc.evidence_half_life_hours, 0, 24 * 365);
    r.number("floor_min_evidence", rc.floor_min_evidence, 0, 1e6);
    r.integer("breaker_consecutive_failures", rc.breaker_consecutive_failures, 1, 1000000);
    r.number("breaker_failure_rate", rc.breaker_failure_rate, 0.01, 1);
    r.integer("breaker_min_requests", rc.breaker_min_requests, 1, 1000000);
    r.millis("breaker_window_ms", rc.breaker_window, 1, 3600000);
    r.millis("breaker_cooldown_ms", rc.breaker_cooldown, 0, 3600000);
    r.boolean("rebalance", rc.rebalance);
    r.millis("rebalance_interval_ms", rc.rebalance_interval, 10, 3600000);
    r.integer("rebalance_max_units", rc.rebalance_max_units, 1, 1000000);
    r.finish();
  }
  {
    auto w = top.object("webhooks");
    w.millis("timeout_ms", cfg.webhooks.timeout, 1, 600000);
    w.millis("backoff_initial_ms", cfg.webhooks.backoff_initial, 1, 3600000);
    w.millis("backoff_max_ms", cfg.webhooks.backoff_max, 1, 86400000);
    // The outbox row's own give_up_at (a day after the job ended) bounds retries too.
    w.millis("give_up_after_ms", cfg.webhooks.give_up_after, 1, 86400000);
    w.finish();
  }
  {
    auto a = top.object("auth");
    a.millis("key_cache_ms", cfg.auth.key_cache, 0, 3600000);
    {
      auto limit = a.object("default_rate_limit");
      limit.number("requests_per_second", cfg.auth.default_requests_per_second, 0, 1e6);
      limit.integer("burst", cfg.auth.default_burst, 0, 10000000);
      limit.finish();
      if (cfg.auth.default_requests_per_second > 0 && cfg.auth.default_burst == 0)
        cfg.auth.default_burst = std::max(1, static_cast<int>(cfg.auth.default_requests_per_second * 2));
    }
    a.millis("rate_limit_lease_ms", cfg.auth.rate_limit_lease, 10, 60000);
    a.finish();
  }
  {
    auto m = top.object("metrics");
    if (const json* listen_value = m.find("listen"); listen_value && !listen_value->is_null()) {
      std::string metrics_listen;
      m.string("listen", metrics_listen);
      cfg.metrics.listen = parse_listen_address(metrics_listen, source_name + ": $.metrics.listen");
    }
    m.boolean("require_key", cfg.metrics.require_key);
    m.millis("refresh_ms", cfg.metrics.refresh, 100, 3600000);
    m.finish();
  }
  {
    auto log = top.object("log");
    log.string("level", cfg.log.level);
    if (cfg.log.level != "debug" && cfg.log.level != "info" && cfg.log.level != "warn" && cfg.log.level != "error")
      log.fail("$.log.level", "must be one of debug, info, warn, error");
    log.boolean("access_log", cfg.log.access_log);
    log.finish();
  }
  top.string("public_url", cfg.public_url);
  if (!cfg.public_url.empty() && cfg.public_url.rfind("http://", 0) != 0 && cfg.public_url.rfind("https://", 0) != 0)
    top.fail("$.public_url", "must start with http:// or https://");
  while (!cfg.public_url.empty() && cfg.public_url.back() == '/') cfg.public_url.pop_back();

  if (const json* vendors = top.find("vendors")) {
    if (!vendors->is_array()) top.fail("$.vendors", std::string("expected an array, got ") + json_type_name(*vendors));
    for (size_t i = 0; i < vendors->size(); ++i) {
      VendorConfig vendor;
      vendor.path = "$.vendors[" + std::to_string(i) + "]";
      const json& entry = (*vendors)[i];
      if (!entry.is_object()) top.fail(vendor.path, std::string("expected an object, got ") + json_type_name(entry));
      JsonReader reader(entry, vendor.path, source_name, env);
      reader.string("id", vendor.id);
      reader.string("kind", vendor.kind);
      if (vendor.id.empty() || vendor.id.size() > 63 ||
          vendor.id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos)
        top.fail(vendor.path + ".id", "is required: 1-63 characters of a-z, 0-9 and '-'");
      if (vendor.kind.empty()) top.fail(vendor.path + ".kind", "is required");
      for (const auto& other : cfg.vendors)
        if (other.id == vendor.id) top.fail(vendor.path + ".id", "duplicate vendor id '" + vendor.id + "'");
      vendor.settings = entry;
      cfg.vendors.push_back(std::move(vendor));
    }
  }
  top.finish();

  if (auto url = env("LABELBROKER_DATABASE_URL"); url && !url->empty())
    cfg.database.url = Secret(*url, "env:LABELBROKER_DATABASE_URL");
  if (auto listen_env = env("LABELBROKER_LISTEN"); listen_env && !listen_env->empty())
    cfg.listen = parse_listen_address(*listen_env, "LABELBROKER_LISTEN");
  return cfg;
}

Config load_config(const std::optional<std::string>& explicit_path, const EnvLookup& env) {
  std::optional<std::string> path = explicit_path;
  if (!path) {
    if (auto from_env = env("LABELBROKER_CONFIG"); from_env && !from_env->empty()) path = *from_env;
  }
  const bool named = path.has_value();
  if (!path) path = "config/labelbroker.json";

  std::error_code ec;
  if (!std::filesystem::exists(*path, ec)) {
    if (named) throw ConfigError(*path + ": config file not found");
    return parse_config("{}", "defaults", env);
  }
  std::ifstream in(*path, std::ios::binary);
  if (!in) throw ConfigError(*path + ": cannot read config file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), *path, env);
}

}  // namespace labelbroker::config
