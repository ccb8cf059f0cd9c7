#pragma once
// Surge-style adapter (Surge AI projects API). Config keys beyond the common ones
// (vendors/common/settings.hpp): "payment_per_response" ("USD", required) and
// "num_workers_per_task" (default 1).
#include <memory>

#include "vendors/registry.hpp"

namespace labelbroker::vendors::surge {

std::unique_ptr<VendorAdapter> make_adapter(const config::VendorConfig& vendor, const AdapterContext& context);

}  // namespace labelbroker::vendors::surge
