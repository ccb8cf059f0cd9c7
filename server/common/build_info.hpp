#pragma once
// Version and git commit of this binary, recorded at build time (see cmake/BuildInfo.cmake).
#include <string_view>

namespace labelbroker::common {

std::string_view build_version();
std::string_view build_commit();

}  // namespace labelbroker::common
