#pragma once
// The real v1 API in-process against a scratch database: migrations applied, keys for team-a
// (submitter, viewer, admin) and team-b (submitter), vendors from a config snippet that points nowhere
// (intake never calls vendors; dispatch does not run here), and HTTP helpers with a key.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pqxx/pqxx>

#include "config/config.hpp"
#include "db/migrations.hpp"
#include "db/probe.hpp"
#include "support/api_keys.hpp"
#include "support/http_client.hpp"
#include "support/scratch_db.hpp"
#include "support/test_server.hpp"
#include "vendors/common/http_client.hpp"
#include "vendors/registry.hpp"

namespace labelbroker::testing {

// Two vendors that take general classification work, at an address nobody listens on (the API
// tests never reach a vendor).
inline constexpr const char* kTwoVendors = R"({"vendors": [
  {"id": "scale", "kind": "scale", "base_url": "http://127.0.0.1:9/scale/v1",
   "api_key": "k1", "callback_secret": "callback-secret-scale-0123",
   "capabilities": {"task_types": ["classification"], "domains": ["general"], "expertise": ["general"]},
   "prices": {"classification": "0.04", "preference": "0.06", "rating": "0.08"}},
  {"id": "surge", "kind": "surge", "base_url": "http://127.0.0.1:9/surge/api",
   "api_key": "k3", "callback_secret": "callback-secret-surge-0123",
   "capabilities": {"task_types": ["classification"], "domains": ["general"], "expertise": ["general"]},
   "payment_per_response": "0.15"}
]})";

class ApiFixture {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  // vendors_config: {"vendors": [...]} as in the broker's configuration.
  // dataset_files: the local copies of dataset versions downloads read and fill (none: database only).
  explicit ApiFixture(const char* vendors_config, config::JobsConfig jobs = {},
                      http::ServerOptions options = test_server_options(),
                      const datasets::FileCache* dataset_files = nullptr) {
    {
      pqxx::connection c(scratch_.url());
      db::apply_migrations(c, db::builtin_migrations());
    }
    submitter = make_key(scratch_.url(), "team-a", auth::Role::submitter);
    viewer = make_key(scratch_.url(), "team-a", auth::Role::viewer);
    admin = make_key(scratch_.url(), "team-a", auth::Role::admin);
    other_team = make_key(scratch_.url(), "team-b", auth::Role::submitter);
    const auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    auto cfg = config::parse_config(vendors_config, "test.json", env);
    server_ = std::make_unique<TestServer>(options, scratch_.url(), db::expected_schema_version(), jobs, cfg.vendors,
                                           dataset_files);
    vendors::VendorRegistry registry;
    vendors::register_builtin_vendors(registry);
    server_->vendors() =
        vendors::VendorSet(registry, cfg.vendors, {runtime_, "http://127.0.0.1:9/cb", "test.json", env});
    server_->start();
  }

  HttpResult post(const std::string& path, const std::string& body, const std::string& key, Headers extra = {}) {
    extra.emplace_back("Authorization", "Bearer " + key);
    extra.emplace_back("Content-Type", "application/json");
    return http_request(server_->port(), "POST", path, body, extra);
  }
  HttpResult request(const std::string& method, const std::string& path, const std::string& body,
                     const std::string& key) {
    return http_request(server_->port(), method, path, body,
                        {{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}});
  }
  HttpResult get(const std::string& path, const std::string& key, Headers extra = {}) {
    extra.emplace_back("Authorization", "Bearer " + key);
    return http_request(server_->port(), "GET", path, "", extra);
  }
  std::int64_t count(const std::string& sql) {
    pqxx::connection c(scratch_.url());
    return pqxx::nontransaction(c).exec1(sql)[0].as<std::int64_t>();
  }
  // The one value `sql` selects, as text ("" for NULL).
  std::string text(const std::string& sql) {
    pqxx::connection c(scratch_.url());
    auto field = pqxx::nontransaction(c).exec1(sql)[0];
    return field.is_null() ? "" : field.as<std::string>();
  }
  void exec(const std::string& sql) {
    pqxx::connection c(scratch_.url());
    pqxx::nontransaction(c).exec0(sql);
  }
  std::uint16_t port() const { return server_->port(); }
  const http::Router& router() { return server_->router(); }
  std::string url() const { return scratch_.url(); }
  bool healthy() { return http_request(server_->port(), "GET", "/healthz").status == 200; }

  std::string submitter, viewer, admin, other_team;

 private:
  ScratchDatabase scratch_;
  vendors::HttpRuntime runtime_;  // outlives the adapters in the server
  std::unique_ptr<TestServer> server_;
};

}  // namespace labelbroker::testing
