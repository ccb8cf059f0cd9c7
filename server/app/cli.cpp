#include "app/cli.hpp"

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "app/admin.hpp"
#include "app/service.hpp"
#include "common/build_info.hpp"
#include "common/log.hpp"
#include "config/config.hpp"

namespace labelbroker::app {
namespace {

constexpr const char* kUsage = R"(usage: labelbroker [COMMAND] [--config PATH]

Commands:
  serve          run the HTTP service (default); applies pending migrations first
  migrate        apply pending database migrations and exit
  check-config   validate the configuration and exit
  admin ...      create teams and API keys (labelbroker admin --help)
  help           show this help
  version        print the version and exit

Options:
  --config PATH  configuration file (JSON with comments); default: $LABELBROKER_CONFIG,
                 else config/labelbroker.json when present, else built-in defaults
  -h, --help     show this help
  -V, --version  print the version

Environment:
  LABELBROKER_CONFIG        configuration file
  LABELBROKER_DATABASE_URL  PostgreSQL URL, overrides database.url
  LABELBROKER_LISTEN        host:port to listen on, overrides listen

Exit codes:
  0  ok (serve: stopped cleanly after SIGTERM or SIGINT)
  1  runtime failure: database unreachable, address in use, migration failed
  2  usage or configuration error
  3  schema mismatch: an applied migration was edited, or the database is newer than this binary
)";

struct Arguments {
  std::string command = "serve";
  std::optional<std::string> config_path;
  std::vector<std::string> admin_args;  // everything after "admin" except --config
};

struct UsageError {
  std::string message;
};

Arguments parse_arguments(int argc, char** argv) {
  Arguments args;
  bool command_seen = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (command_seen && args.command == "admin" && arg != "--config" && arg.rfind("--config=", 0) != 0) {
      args.admin_args.push_back(arg);
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      args.command = "help";
      return args;
    }
    if (arg == "-V" || arg == "--version") {
      args.command = "version";
      return args;
    }
    if (arg == "--config" || arg.rfind("--config=", 0) == 0) {
      if (arg == "--config") {
        if (i + 1 >= argc) throw UsageError{"--config needs a path"};
        args.config_path = argv[++i];
      } else {
        args.config_path = arg.substr(9);
      }
      if (args.config_path->empty()) throw UsageError{"--config needs a path"};
      continue;
    }
    if (!arg.empty() && arg[0] == '-') throw UsageError{"unknown option '" + arg + "'"};
    if (command_seen) throw UsageError{"unexpected argument '" + arg + "'"};
    if (arg != "serve" && arg != "migrate" && arg != "check-config" && arg != "help" && arg != "version" &&
        arg != "admin")
      throw UsageError{"unknown command '" + arg + "'"};
    args.command = arg;
    command_seen = true;
  }
  return args;
}

}  // namespace

int run(int argc, char** argv) {
  Arguments args;
  try {
    args = parse_arguments(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "labelbroker: " << e.message << "\n"
              << "Try 'labelbroker --help'.\n";
    return kExitUsage;
  }
  if (args.command == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (args.command == "version") {
    std::cout << "labelbroker " << common::build_version() << " (" << common::build_commit() << ")\n";
    return kExitOk;
  }

  config::Config cfg;
  try {
    cfg = config::load_config(args.config_path, config::process_env());
  } catch (const config::ConfigError& e) {
    std::cerr << "labelbroker: config error: " << e.what() << "\n";
    return kExitUsage;
  }
  common::log::set_level(common::log::parse_level(cfg.log.level));

  if (args.command == "check-config") {
    try {
      validate_vendors(cfg);
    } catch (const config::ConfigError& e) {
      std::cerr << "labelbroker: config error: " << e.what() << "\n";
      return kExitUsage;
    }
    std::cout << "labelbroker: " << cfg.source << " is valid (" << cfg.vendors.size() << " vendors)\n";
    return kExitOk;
  }
  if (args.command == "migrate") return migrate(cfg);
  if (args.command == "admin") return admin(cfg, args.admin_args);
  return serve(cfg);
}

}  // namespace labelbroker::app
