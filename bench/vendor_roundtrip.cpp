// Submits units to vendor-sim through each adapter and reports units/s and the adapter-side CPU
// per unit. Run through bench/vendor_roundtrip.sh, which starts the simulator.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "common/crypto.hpp"
#include "config/config.hpp"
#include "vendors/registry.hpp"

using namespace labelbroker;

namespace {

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

std::string entry(const std::string& kind, const std::string& sim) {
  const std::string common = R"("callback_secret": "bench-callback-secret-000", "http": {"max_in_flight": 64})";
  if (kind == "scale")
    return R"({"id": "scale", "kind": "scale", "base_url": ")" + sim + R"(/scale/v1", "api_key": "bench-scale-key",
      "capabilities": {"max_batch_size": 200}, "prices": {"classification": "0.04"}, )" + common + "}";
  if (kind == "surge")
    return R"({"id": "surge", "kind": "surge", "base_url": ")" + sim + R"(/surge/api", "api_key": "bench-surge-key",
      "capabilities": {"max_batch_size": 500}, "payment_per_response": "0.15", )" + common + "}";
  return R"({"id": "mercor", "kind": "mercor", "base_url": ")" + sim + R"(/mercor/v1", "api_key": "bench-mercor-key",
      "capabilities": {"max_batch_size": 500}, "hourly_rate_max": "150.00", "weekly_cap_hours": 168, )" + common + "}";
}

}  // namespace

int main(int argc, char** argv) {
  std::string sim, kinds = "scale,surge,mercor";
  int units = 10000, threads = 4;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--sim") sim = next();
    else if (a == "--units") units = std::atoi(next().c_str());
    else if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--adapters") kinds = next();
    else {
      std::cerr << "usage: vendor_roundtrip --sim http://127.0.0.1:PORT [--units N] [--threads T] "
                   "[--adapters scale,surge,mercor]\n";
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (sim.empty() || units <= 0 || threads <= 0) {
    std::cerr << "vendor_roundtrip: --sim is required; --units and --threads must be positive\n";
    return 2;
  }
  const auto env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  vendors::HttpRuntime runtime;
  vendors::VendorRegistry registry;
  vendors::register_builtin_vendors(registry);
  const std::string run = common::random_hex(4);
  int failures = 0;
  std::printf("%-8s %8s %10s %12s %14s %8s\n", "adapter", "units", "seconds", "units/s", "cpu us/unit", "failed");
  for (size_t start = 0; start < kinds.size();) {
    size_t comma = kinds.find(',', start);
    const std::string kind = kinds.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? kinds.size() : comma + 1;
    auto cfg = config::parse_config("{\"vendors\": [" + entry(kind, sim) + "]}", "bench", env);
    auto adapter = registry.create(cfg.vendors.at(0), {runtime, "http://127.0.0.1:9/v1/callbacks", "bench", env});
    const std::size_t batch = adapter->capabilities().max_batch_size;

    // Warm up: connections, Surge project, Mercor engagement.
    vendors::WorkUnit warm;
    warm.assignment_id = run + "-" + kind + "-warm";
    warm.job_id = "bench-" + run;
    warm.labels = {"yes", "no"};
    warm.domain = "general";
    warm.data = {{"text", "warm-up"}};
    adapter->submit({warm});

    std::atomic<int> next_batch{0}, failed{0}, submitted{0};
    const int batches = (units + static_cast<int>(batch) - 1) / static_cast<int>(batch);
    const double cpu_before = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (int b; (b = next_batch++) < batches;) {
          std::vector<vendors::WorkUnit> work;
          for (int i = b * static_cast<int>(batch); i < std::min(units, (b + 1) * static_cast<int>(batch)); ++i) {
            vendors::WorkUnit u = warm;
            u.assignment_id = run + "-" + kind + "-" + std::to_string(i);
            u.data = {{"text", "item " + std::to_string(i)}};
            work.push_back(std::move(u));
          }
          auto result = adapter->submit(work);
          submitted += static_cast<int>(result.submitted.size());
          if (!result.failed.empty() && failed.fetch_add(static_cast<int>(result.failed.size())) == 0)
            std::fprintf(stderr, "vendor_roundtrip: %s: first failure: %s\n", kind.c_str(),
                         result.failed.front().message.c_str());
        }
      });
    }
    for (auto& t : pool) t.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = cpu_seconds() - cpu_before;
    std::printf("%-8s %8d %10.3f %12.0f %14.1f %8d\n", kind.c_str(), submitted.load(), seconds,
                submitted / seconds, cpu / std::max(1, submitted.load()) * 1e6, failed.load());
    failures += failed;
  }
  return failures == 0 ? 0 : 1;
}
