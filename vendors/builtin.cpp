#include "vendors/registry.hpp"
#include "vendors/mercor/mercor_adapter.hpp"
#include "vendors/scale/scale_adapter.hpp"
#include "vendors/surge/surge_adapter.hpp"

namespace labelbroker::vendors {

void register_builtin_vendors(VendorRegistry& registry) {
  registry.register_kind("scale", scale::make_adapter);
  registry.register_kind("surge", surge::make_adapter);
  registry.register_kind("mercor", mercor::make_adapter);
}

}  // namespace labelbroker::vendors
