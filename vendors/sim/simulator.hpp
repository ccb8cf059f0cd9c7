#pragma once
// vendor-sim: simulated labeling vendors behind one HTTP server (see docs/vendor-sim.md).
//
// Simulator registers every vendor's wire-format routes plus the control surface (/_sim/...,
// /healthz) on a Router; SimServer is the simulator served over HTTP, which is what main() and the
// tests run. Both are thread safe for the HTTP server's concurrent handlers. Neither header
// includes Beast or Asio.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/time.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "vendors/sim/scenario.hpp"

namespace labelbroker::vendors::sim {

class Engine;

class Simulator {
 public:
  // The clock stamps tasks and evaluates outage windows and drift; it must outlive the simulator.
  // Work latencies are real time (the scheduler sleeps on a steady clock).
  // shutting_down (optional) cuts simulated hangs short once set, e.g. Lifecycle::draining.
  Simulator(Scenario scenario, const common::Clock& clock, const std::atomic<bool>* shutting_down = nullptr);
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  void register_routes(http::Router& router);
  // The body of GET /_sim/stats.
  nlohmann::json stats() const;
  // Forgets all tasks and counters and restores the scenario's behaviour (POST /_sim/reset).
  void reset();
  // Stops the work scheduler and the callback threads; later work is never completed.
  void stop();

 private:
  std::unique_ptr<Engine> engine_;
};

const common::Clock& system_clock();

// Server options suited to the simulator: I/O and worker threads from the scenario (hangs hold a
// worker each), access log as the scenario says.
http::ServerOptions sim_server_options(const Scenario& scenario, std::string host, std::uint16_t port);

class SimServer {
 public:
  SimServer(Scenario scenario, http::ServerOptions options, const common::Clock& clock = system_clock());
  ~SimServer();
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  // Throws std::runtime_error if the address cannot be bound.
  void start();
  std::uint16_t port() const { return server_->port(); }
  // http://host:port, with the bound port.
  std::string url() const;
  void handle_signals() { server_->handle_signals(); }
  void begin_shutdown() { server_->begin_shutdown(); }
  bool wait() { return server_->wait(); }
  Simulator& simulator() { return simulator_; }

 private:
  http::ServerOptions options_;
  http::Router router_;
  http::Lifecycle lifecycle_;  // before simulator_: it watches lifecycle_.draining
  Simulator simulator_;
  std::unique_ptr<http::Server> server_;  // declared last: destroyed first, while the rest still exists
};

}  // namespace labelbroker::vendors::sim
