#pragma once
// Mercor-style adapter (expert engagements). Config keys beyond the common ones
// (vendors/common/settings.hpp): "hourly_rate_max" ("USD", required), "weekly_cap_hours" (40),
// "headcount" (1), "expected_minutes_per_item" (10, for quotes), "skills" ([]).
#include <memory>

#include "vendors/registry.hpp"

namespace labelbroker::vendors::mercor {

std::unique_ptr<VendorAdapter> make_adapter(const config::VendorConfig& vendor, const AdapterContext& context);

}  // namespace labelbroker::vendors::mercor
