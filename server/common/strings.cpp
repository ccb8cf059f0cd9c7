#include "common/strings.hpp"

#include <algorithm>
#include <cctype>

namespace labelbroker::common {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::optional<std::string_view> find_field(const std::vector<std::pair<std::string, std::string>>& fields,
                                           std::string_view name) {
  for (const auto& [k, v] : fields)
    if (iequals(k, name)) return std::string_view(v);
  return std::nullopt;
}

}  // namespace labelbroker::common
