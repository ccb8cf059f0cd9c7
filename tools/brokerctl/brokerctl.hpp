#pragma once
// brokerctl: the command-line client for labelbroker's Jobs and Datasets APIs (#7). The commands
// live here, apart from main.cpp, so that tests can run them in-process as well as through the binary.
//
// run() is synchronous and single-threaded from the caller's view (the HTTP client's I/O thread is
// internal). Every failure becomes one of the documented exit codes with a message on `err`;
// nothing is thrown out of run().
#include <iosfwd>
#include <string>
#include <vector>

namespace labelbroker::brokerctl {

// The documented exit codes (also in --help and the README).
enum ExitCode : int {
  kOk = 0,
  kUsage = 2,
  kNotReady = 3,         // a dataset version still building, or a --wait that timed out
  kChecksum = 4,         // downloaded bytes do not hash to the manifest's sha256
  kServer = 5,           // 5xx, network failure, or another 4xx (404: the server's detail is printed)
  kAuth = 6,             // 401 or 403
};

struct Context {
  std::string base_url = "http://127.0.0.1:8080";  // LABELBROKER_URL
  std::string api_key;                              // LABELBROKER_API_KEY, sent as a Bearer token
  std::ostream* out = nullptr;                      // results (ids, JSON, tables)
  std::ostream* err = nullptr;                      // messages and progress bars
  bool out_is_tty = false;                          // vendors scores: a table, else JSON
  bool err_is_tty = false;                          // progress bars only on a terminal
};

// args: the command line without the program name, e.g. {"datasets", "pull", "d@3", "-o", "f"}.
int run(const std::vector<std::string>& args, const Context& context);

// Parses a Link header's rel="next" target ("" when there is none).
std::string next_link(const std::string& link_header);

}  // namespace labelbroker::brokerctl
