#pragma once
// The broker's configuration: config/labelbroker.json (JSON with comments) plus environment
// overrides. Loading validates everything up front: unknown keys, wrong types and out-of-range
// values are rejected with a ConfigError whose message is one line naming the JSON path.
#include <chrono>
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
  int pool_size = 8;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds statement_timeout{10000};
  std::chrono::milliseconds acquire_timeout{5000};
  // How long start-up keeps retrying an unreachable database before giving up.
  std::chrono::milliseconds startup_wait{30000};
  bool migrate_on_start = true;
};

struct HttpConfig {
  int io_threads = 0;  // 0: one per core
  int worker_threads = 8;
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
