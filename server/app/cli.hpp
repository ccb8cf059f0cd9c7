#pragma once
// Command-line entry point of the labelbroker binary. main() only calls run().
//
// Exit codes: 0 ok; 1 runtime failure (database unreachable, cannot listen, migration failed);
// 2 usage or configuration error; 3 schema mismatch (an applied migration changed or is unknown).
namespace labelbroker::app {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,
  kExitUsage = 2,
  kExitSchemaMismatch = 3,
};

int run(int argc, char** argv);

}  // namespace labelbroker::app
