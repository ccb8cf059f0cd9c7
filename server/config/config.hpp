#pragma once
// The broker's configuration: config/labelbroker.json (JSON with comments) plus environment
// overrides. Loading validates everything up front: unknown keys, wrong types and out-of-range
// values are rejected with a ConfigError whose message is one line naming the JSON path.
#include <chrono>
#include <map>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace labelbroker::config {

// A value that must never be logged (database passwords, vendor keys). Written in the config
// either inline or as {"env": "NAME"}, in which case it is read from the environment at load.
class Secret {
 public:
  Secret() = default;
  Secret(std::string value, std::string origin) : value_(std::move(value)), origin_(std::move(origin)) {}
  const std::string& reveal() const { return value_; }
  // Where the value came from ("config", "env:NAME"); safe to log.
  const std::string& origin() const { return origin_; }
  bool empty() const { return value_.empty(); }

 private:
  std::string value_;
  std::string origin_;
};

struct ListenAddress {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0 asks the OS for a free port (tests)
  std::string to_string() const;
};

struct DatabaseConfig {
  Secret url{"postgresql://labelbroker@127.0.0.1:55432/labelbroker", "default"};
  int pool_size = 16;  // HTTP workers and background loops share it
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds statement_timeout{10000};
  std::chrono::milliseconds acquire_timeout{5000};
  // How long start-up keeps retrying an unreachable database before giving up.
  std::chrono::milliseconds startup_wait{30000};
  bool migrate_on_start = true;
};

struct HttpConfig {
  int io_threads = 0;  // 0: one per core
  int worker_threads = 32;  // handlers block on the database; callbacks wait for a group commit
  std::size_t body_limit_bytes = 8 * 1024 * 1024;
  std::size_t header_limit_bytes = 16 * 1024;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{60000};
  std::chrono::milliseconds idle_timeout{75000};
  std::chrono::milliseconds write_timeout{60000};
  // After SIGTERM: keep accepting (with /readyz at 503) this long so load balancers stop sending.
  std::chrono::milliseconds drain_delay{0};
  std::chrono::milliseconds shutdown_grace{20000};
};

// Intake limits for POST /v1/jobs and POST /v1/jobs/{id}/items.
struct JobsConfig {
  // Request body limit for the two job-upload routes (other routes keep http.body_limit_bytes).
  std::size_t body_limit_bytes = 256 * 1024 * 1024;
  std::size_t max_items_per_request = 1000000;
  std::size_t max_items_per_job = 10000000;
};

// Datasets (#7).
struct DatasetsConfig {
  // Local copies of built versions that downloads read instead of the database. nullopt: a
  // directory under the system's temp dir; "": none (every download reads the database).
  std::optional<std::string> cache_dir;
};

// Background work: planning, dispatch to vendors, polling, cancel, deadlines. Every broker process
// runs these loops; rows are claimed, so any number of processes can share one database.
struct DispatchConfig {
  bool enabled = true;
  int workers_per_vendor = 2;             // concurrent batches in flight per vendor, per process
  std::size_t plan_chunk_items = 1000;    // items planned per transaction
  std::size_t plan_ahead_items = 5000;    // a job's unsent units before its planning waits (routing decides late)
  std::chrono::milliseconds lease{60000}; // a claim not finished by then is taken over
  int max_attempts = 8;                   // sends of one assignment before it moves elsewhere
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{60000};
  std::chrono::milliseconds idle_wait{200};       // how long an idle loop sleeps before looking again
  std::chrono::milliseconds poll_after{30000};    // ask the vendor about a unit with no callback after this
  std::chrono::milliseconds poll_interval{5000};
  std::chrono::milliseconds maintenance_interval{500};  // lease recovery, completion, deadlines
};

// Job events POSTed to a job's callback_url (signed, retried, at least once).
struct WebhookConfig {
  std::chrono::milliseconds timeout{10000};
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{3600000};
  std::chrono::milliseconds give_up_after{24 * 3600 * 1000};
};

// Measuring vendors: gold mixing, the Beta prior on gold accuracy, Dawid-Skene at a job's end,
// and how long a computed scores response is reused.
struct QualityConfig {
  double gold_rate = 0.10;          // gold units per real unit in a batch (at least one when a job has gold)
  double prior_alpha = 1.0;         // Beta prior on a vendor's gold accuracy: pseudo-counts right ...
  double prior_beta = 1.0;          // ... and wrong
  int ds_max_iterations = 50;       // Dawid-Skene EM rounds
  double ds_tolerance = 1e-6;       // stop when the log-likelihood per item changes less
  std::chrono::milliseconds scores_cache{1000};  // GET /v1/vendors/scores and /v1/concentration
};

// Bearer API keys on /v1.
// The routing policy (#6; docs/routing.md). Shares are of judgments in a domain over the window.
struct RoutingConfig {
  double max_share = 0.5;                          // no vendor above this share ...
  std::map<std::string, double> domain_max_share;  // ... or its domain's cap ...
  std::map<std::string, double> team_max_share;    // ... or the team's (by team name), if lower
  double min_share = 0.05;                         // every eligible vendor keeps at least this
  double temperature = 0.1;                        // softmax temperature over scores in [0, 1]
  double credible = 0.90;                          // interval the quality floor is checked against
  std::int64_t share_cap_min_window = 100;         // window judgments before a cap removes a vendor
  std::chrono::hours window{24};                   // the sliding window of shares
  double evidence_discount = 0.98;                 // per gold answer: memory of ~50 answers
  double evidence_half_life_hours = 6;             // evidence also fades with time
  double floor_min_evidence = 10;                  // gold answers before a quality floor judges a vendor
  // Circuit breaker per vendor (per process).
  int breaker_consecutive_failures = 5;
  double breaker_failure_rate = 0.5;
  int breaker_min_requests = 20;
  std::chrono::milliseconds breaker_window{60000};
  std::chrono::milliseconds breaker_cooldown{30000};
  // Rebalancer: one active process at a time (advisory lock).
  bool rebalance = true;
  std::chrono::milliseconds rebalance_interval{5000};
  std::size_t rebalance_max_units = 2000;  // units moved per pass
};

struct AuthConfig {
  // A verified key is reused this long without asking the database, so revoking a key or changing
  // its role takes effect within this long in every process. 0: every request asks the database.
  std::chrono::milliseconds key_cache{5000};
  // Requests per second (with a burst) for keys that have no rate limit of their own, counted
  // per key across every broker process sharing the database. 0: no default limit.
  double default_requests_per_second = 0;
  int default_burst = 0;  // 0 with a rate: twice the rate, at least 1
  // A process takes this long's worth of a key's rate from the shared bucket at a time (at least
  // one request) and drops what it has not used after this long: processes never admit more than
  // the limit between them, and a busy key costs a database round trip per lease, not per request.
  std::chrono::milliseconds rate_limit_lease{100};
};

// GET /metrics (Prometheus). Cluster-wide numbers come from a snapshot of the database refreshed
// every `refresh`; the page itself is rendered from memory.
struct MetricsConfig {
  std::optional<ListenAddress> listen;  // set: served only on this separate listener
  bool require_key = false;             // true: any valid API key (viewer or above)
  std::chrono::milliseconds refresh{5000};
};

struct LogConfig {
  std::string level = "info";
  bool access_log = true;
};

// One configured vendor. The common keys are checked here; the rest of the object belongs to the
// adapter of that kind, whose factory validates it at start-up (unknown keys rejected there).
struct VendorConfig {
  std::string id;    // unique, [a-z0-9-]; also the vendor's URL segment in /v1/callbacks/{id}
  std::string kind;  // "scale", "surge", "mercor"
  nlohmann::json settings = nlohmann::json::object();  // the whole object as written
  std::string path;  // "$.vendors[2]", for error messages
};

struct Config {
  ListenAddress listen;
  // Base URL vendors use to reach this broker (callbacks); empty: http://<bound listen address>.
  std::string public_url;
  std::vector<VendorConfig> vendors;
  DatabaseConfig database;
  HttpConfig http;
  JobsConfig jobs;
  DatasetsConfig datasets;
  DispatchConfig dispatch;
  WebhookConfig webhooks;
  QualityConfig quality;
  RoutingConfig routing;
  AuthConfig auth;
  MetricsConfig metrics;
  LogConfig log;
  std::string source = "defaults";  // file the values came from, for log lines
};

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup process_env();

// Parses config text (JSON, comments allowed). source_name prefixes error messages.
Config parse_config(std::string_view text, const std::string& source_name, const EnvLookup& env);

// Resolves the config file: explicit_path (--config), else LABELBROKER_CONFIG, else
// config/labelbroker.json if it exists, else built-in defaults. A named file that does not exist is
// an error. Then applies LABELBROKER_DATABASE_URL and LABELBROKER_LISTEN.
Config load_config(const std::optional<std::string>& explicit_path, const EnvLookup& env);

// "host:port" (IPv6 as "[::1]:8080"). Throws ConfigError naming `where`.
ListenAddress parse_listen_address(std::string_view text, const std::string& where);

}  // namespace labelbroker::config
