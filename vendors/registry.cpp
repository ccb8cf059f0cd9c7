#include "vendors/registry.hpp"

namespace labelbroker::vendors {

void VendorRegistry::register_kind(std::string kind, AdapterFactory factory) {
  factories_[std::move(kind)] = std::move(factory);
}

std::unique_ptr<VendorAdapter> VendorRegistry::create(const config::VendorConfig& vendor,
                                                      const AdapterContext& context) const {
  auto it = factories_.find(vendor.kind);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [kind, _] : factories_) known += (known.empty() ? "" : ", ") + kind;
    throw config::ConfigError(context.config_source + ": " + vendor.path + ".kind: unknown vendor kind '" +
                              vendor.kind + "' (" + known + ")");
  }
  return it->second(vendor, context);
}

std::vector<std::string> VendorRegistry::kinds() const {
  std::vector<std::string> out;
  for (const auto& [kind, _] : factories_) out.push_back(kind);
  return out;
}

VendorSet::VendorSet(const VendorRegistry& registry, const std::vector<config::VendorConfig>& vendors,
                     const AdapterContext& context) {
  for (const auto& vendor : vendors) adapters_.push_back(registry.create(vendor, context));
}

VendorAdapter* VendorSet::find(std::string_view id) const {
  for (const auto& a : adapters_)
    if (a->id() == id) return a.get();
  return nullptr;
}

}  // namespace labelbroker::vendors
