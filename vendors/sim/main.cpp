#include <csignal>

#include "vendors/sim/cli.hpp"

int main(int argc, char** argv) {
  // A callback receiver that closes early must be an error on the socket, not a signal.
  std::signal(SIGPIPE, SIG_IGN);
  return labelbroker::vendors::sim::run_cli(argc, argv);
}
