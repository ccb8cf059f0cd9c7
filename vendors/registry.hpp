#pragma once
// Creates adapters by kind from the `vendors` section of the configuration. Factories validate
// their vendor's settings and throw config::ConfigError (naming the JSON path) at start-up.
// Built-in kinds are registered explicitly by register_builtin_vendors(): self-registering
// objects would be dropped by the linker from a static library.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "vendors/adapter.hpp"
#include "vendors/common/http_client.hpp"

namespace labelbroker::vendors {

struct AdapterContext {
  HttpRuntime& runtime;
  std::string callback_base_url;  // e.g. http://broker:8080/v1/callbacks; the adapter appends /<id>
  std::string config_source;      // file name for error messages
  config::EnvLookup env;
};

using AdapterFactory =
    std::function<std::unique_ptr<VendorAdapter>(const config::VendorConfig&, const AdapterContext&)>;

class VendorRegistry {
 public:
  void register_kind(std::string kind, AdapterFactory factory);
  // Throws config::ConfigError for an unknown kind or invalid settings.
  std::unique_ptr<VendorAdapter> create(const config::VendorConfig& vendor, const AdapterContext& context) const;
  std::vector<std::string> kinds() const;

 private:
  std::map<std::string, AdapterFactory> factories_;
};

void register_builtin_vendors(VendorRegistry& registry);

// All configured vendors, created once at start-up and read-only afterwards.
class VendorSet {
 public:
  VendorSet() = default;
  VendorSet(const VendorRegistry& registry, const std::vector<config::VendorConfig>& vendors,
            const AdapterContext& context);
  VendorAdapter* find(std::string_view id) const;
  const std::vector<std::unique_ptr<VendorAdapter>>& all() const { return adapters_; }

 private:
  std::vector<std::unique_ptr<VendorAdapter>> adapters_;
};

}  // namespace labelbroker::vendors
