#pragma once
// The two long-running commands, wired from a loaded configuration. Each returns an exit code
// (see app/cli.hpp) and logs why it failed.
#include "config/config.hpp"
#include "db/pool.hpp"

namespace labelbroker::app {

int migrate(const config::Config& cfg);
int serve(const config::Config& cfg);
// Pool settings from the database section of the config.
db::PoolOptions pool_options(const config::Config& cfg);

// Builds every configured vendor adapter without contacting anyone; throws config::ConfigError.
void validate_vendors(const config::Config& cfg);

}  // namespace labelbroker::app
