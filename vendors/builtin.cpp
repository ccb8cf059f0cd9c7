#include "vendors/registry.hpp"
#include "vendors/scale/scale_adapter.hpp"

namespace labelbroker::vendors {

void register_builtin_vendors(VendorRegistry& registry) {
  registry.register_kind("scale", scale::make_adapter);
}

}  // namespace labelbroker::vendors
