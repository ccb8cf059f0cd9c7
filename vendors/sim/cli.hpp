#pragma once
// The vendor-sim command line: vendor-sim [--scenario FILE] [--listen HOST:PORT] [--help].
namespace labelbroker::vendors::sim {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // cannot bind the address
constexpr int kExitUsage = 2;    // bad arguments or scenario

int run_cli(int argc, char** argv);

}  // namespace labelbroker::vendors::sim
