#pragma once
// Scale-style adapter (Scale AI v1 task API). Config keys beyond the common ones
// (vendors/common/settings.hpp): "prices" {task type: "USD"} and optional "project".
#include <memory>

#include "vendors/registry.hpp"

namespace labelbroker::vendors::scale {

std::unique_ptr<VendorAdapter> make_adapter(const config::VendorConfig& vendor, const AdapterContext& context);

}  // namespace labelbroker::vendors::scale
