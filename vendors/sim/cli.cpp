#include "vendors/sim/cli.hpp"

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "common/log.hpp"
#include "vendors/sim/scenario.hpp"
#include "vendors/sim/simulator.hpp"

namespace labelbroker::vendors::sim {
namespace {

constexpr const char* kUsage = R"(usage: vendor-sim [--scenario FILE] [--listen HOST:PORT]

Serves simulated labeling vendors (Scale-, Surge- and Mercor-style APIs) on one port, each under
its own path prefix (/<vendor id>/...), plus a control surface (GET /_sim/stats,
POST /_sim/vendors/{id}, POST /_sim/reset, GET /healthz). See docs/vendor-sim.md.

Options:
  --scenario FILE     scenario (JSON with comments); default config/sim/default.json
  --listen HOST:PORT  address to listen on (port 0: any free port; the bound URL is logged);
                      default: $VENDOR_SIM_LISTEN, else the scenario's "listen", else 127.0.0.1:9100
  -h, --help          show this help

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 cannot listen, 2 usage or scenario error.
)";

struct UsageError {
  std::string message;
};

struct Listen {
  std::string host;
  std::uint16_t port = 0;
};

Listen parse_listen(const std::string& text, const std::string& where) {
  std::string host, port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw UsageError{where + ": expected [ipv6]:port, got \"" + text + "\""};
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) throw UsageError{where + ": expected HOST:PORT, got \"" + text + "\""};
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535)
    throw UsageError{where + ": expected HOST:PORT with a port from 0 to 65535, got \"" + text + "\""};
  return {host, static_cast<std::uint16_t>(std::stoul(port))};
}

}  // namespace

int run_cli(int argc, char** argv) {
  std::string scenario_path = "config/sim/default.json";
  std::optional<std::string> listen_arg;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto value = [&](const std::string& name) -> std::string {
        if (arg.rfind(name + "=", 0) == 0) return arg.substr(name.size() + 1);
        if (i + 1 >= argc) throw UsageError{name + " needs a value"};
        return argv[++i];
      };
      if (arg == "-h" || arg == "--help") {
        std::cout << kUsage;
        return kExitOk;
      }
      if (arg == "--scenario" || arg.rfind("--scenario=", 0) == 0) {
        scenario_path = value("--scenario");
        if (scenario_path.empty()) throw UsageError{"--scenario needs a file"};
      } else if (arg == "--listen" || arg.rfind("--listen=", 0) == 0) {
        listen_arg = value("--listen");
      } else {
        throw UsageError{"unknown argument '" + arg + "'"};
      }
    }
  } catch (const UsageError& e) {
    std::cerr << "vendor-sim: " << e.message << "\nTry 'vendor-sim --help'.\n";
    return kExitUsage;
  }

  Scenario scenario;
  Listen listen{"127.0.0.1", 9100};
  try {
    scenario = load_scenario(scenario_path);
    if (listen_arg) {
      listen = parse_listen(*listen_arg, "--listen");
    } else if (const char* env = std::getenv("VENDOR_SIM_LISTEN"); env && *env) {
      listen = parse_listen(env, "VENDOR_SIM_LISTEN");
    } else if (!scenario.listen.empty()) {
      listen = parse_listen(scenario.listen, scenario_path + ": $.listen");
    }
  } catch (const ScenarioError& e) {
    std::cerr << "vendor-sim: scenario error: " << e.what() << "\n";
    return kExitUsage;
  } catch (const UsageError& e) {
    std::cerr << "vendor-sim: " << e.message << "\n";
    return kExitUsage;
  }

  nlohmann::json vendors = nlohmann::json::array();
  for (const auto& v : scenario.vendors) vendors.push_back({{"id", v.id}, {"kind", kind_name(v.kind)}});
  common::log::info("starting", {{"scenario", scenario_path}, {"seed", scenario.seed}, {"vendors", vendors}});
  SimServer server(scenario, sim_server_options(scenario, listen.host, listen.port));
  try {
    server.start();
  } catch (const std::exception& e) {
    common::log::error("cannot start HTTP server", {{"error", e.what()}});
    std::cerr << "vendor-sim: " << e.what() << "\n";
    return kExitFailure;
  }
  server.handle_signals();
  common::log::info("listening", {{"url", server.url()}});
  const bool drained = server.wait();
  common::log::info("stopped", {{"drained", drained}});
  return kExitOk;
}

}  // namespace labelbroker::vendors::sim
