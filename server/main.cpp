#include <csignal>

#include "app/cli.hpp"

int main(int argc, char** argv) {
  // libpq can write to a socket the server has closed; that must be an error, not a signal.
  std::signal(SIGPIPE, SIG_IGN);
  return labelbroker::app::run(argc, argv);
}
