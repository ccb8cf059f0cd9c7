// brokerctl: wires the environment and the terminal to the commands in brokerctl.cpp.
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include "tools/brokerctl/brokerctl.hpp"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe or connection is an error return, not a kill
  labelbroker::brokerctl::Context context;
  if (const char* url = std::getenv("LABELBROKER_URL"); url && *url) context.base_url = url;
  if (const char* key = std::getenv("LABELBROKER_API_KEY")) context.api_key = key;
  context.out = &std::cout;
  context.err = &std::cerr;
  context.out_is_tty = ::isatty(STDOUT_FILENO) == 1;
  context.err_is_tty = ::isatty(STDERR_FILENO) == 1;
  const std::vector<std::string> args(argv + 1, argv + argc);
  const int code = labelbroker::brokerctl::run(args, context);
  std::cout.flush();
  return code;
}
