#pragma once
// Runs a program as a child process for end-to-end tests: the real labelbroker binary, scripts.
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace labelbroker::testing {

class ChildProcess {
 public:
  // Starts argv[0] (a path) with the parent's environment plus `env` (empty value: unset).
  // stdout and stderr go to temporary files read by output()/errors().
  ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> env = {});
  ~ChildProcess();  // kills the child if still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  void signal(int signo);
  // Exit status, or nullopt if still running after `timeout` (the caller decides what that means).
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  std::string output() const;
  std::string errors() const;
  // Polls stderr until `needle` appears or the process exits or the timeout passes.
  bool wait_for_stderr(const std::string& needle, std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string out_path_;
  std::string err_path_;
};

// Runs to completion (killed after timeout) and returns {exit code, stdout, stderr}.
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
RunResult run_process(std::vector<std::string> argv, std::map<std::string, std::string> env = {},
                      std::chrono::milliseconds timeout = std::chrono::seconds(120));

// Writes text to a new temporary file and returns its path.
std::string write_temp_file(const std::string& text, const std::string& suffix = ".json");

// A TCP port that was free a moment ago.
std::uint16_t free_port();

}  // namespace labelbroker::testing
