#include "vendors/sim/simulator.hpp"

#include "vendors/sim/engine.hpp"

namespace labelbroker::vendors::sim {

Simulator::Simulator(Scenario scenario, const common::Clock& clock, const std::atomic<bool>* shutting_down)
    : engine_(std::make_unique<Engine>(std::move(scenario), clock, shutting_down)) {}

Simulator::~Simulator() = default;

void Simulator::register_routes(http::Router& router) {
  engine_->register_routes(router);
}

nlohmann::json Simulator::stats() const {
  return engine_->stats_json();
}

void Simulator::reset() {
  engine_->reset();
}

void Simulator::stop() {
  engine_->stop();
}

const common::Clock& system_clock() {
  static const common::SystemClock clock;
  return clock;
}

http::ServerOptions sim_server_options(const Scenario& scenario, std::string host, std::uint16_t port) {
  http::ServerOptions o;
  o.host = std::move(host);
  o.port = port;
  o.io_threads = scenario.io_threads;
  o.worker_threads = scenario.worker_threads;
  o.shutdown_grace = std::chrono::milliseconds(5000);
  o.access_log = scenario.access_log;
  return o;
}

SimServer::SimServer(Scenario scenario, http::ServerOptions options, const common::Clock& clock)
    : options_(std::move(options)), simulator_(std::move(scenario), clock, &lifecycle_.draining) {
  simulator_.register_routes(router_);
  server_ = std::make_unique<http::Server>(options_, router_, lifecycle_);
}

SimServer::~SimServer() {
  // Hanging requests end early once the server drains; then the server, then the work.
  lifecycle_.draining = true;
  server_.reset();
  simulator_.stop();
}

void SimServer::start() {
  server_->start();
}

std::string SimServer::url() const {
  const std::string host = options_.host.find(':') != std::string::npos ? "[" + options_.host + "]" : options_.host;
  return "http://" + host + ":" + std::to_string(port());
}

}  // namespace labelbroker::vendors::sim
