#pragma once
// `labelbroker admin ...`: team and key management from the command line (for the first admin
// key, scripts and operators). Returns an exit code (see app/cli.hpp).
#include <string>
#include <vector>

#include "config/config.hpp"

namespace labelbroker::app {

int admin(const config::Config& cfg, const std::vector<std::string>& args);

}  // namespace labelbroker::app
