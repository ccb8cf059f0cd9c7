// Dawid-Skene on a simulated job of --items items and --classes classes: each item judged by 3 of
// 5 vendors (drawn per item) whose accuracies differ, one of them wrong in a fixed direction.
// Times the fit alone (single thread, steady_clock) and compares label accuracy against the truth
// for Dawid-Skene and for majority vote. Run through bench/dawid_skene.sh.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "quality/dawid_skene.hpp"

using namespace labelbroker;

namespace {

constexpr double kTargetSeconds = 1.0;
constexpr std::size_t kJudgmentsPerItem = 3;

struct Vendor {
  double accuracy;
  bool biased;  // when wrong: (truth + 1) mod K instead of a uniform other class
};
constexpr std::array<Vendor, 5> kVendors = {{{0.92, false}, {0.85, false}, {0.75, false}, {0.6, false}, {0.45, true}}};

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: dawid_skene_bench [--items N] [--classes K] [--seed S] [--help]\n"
               "\n"
               "Simulates N items (default 100000) with K classes (default 5), each judged by 3 of 5\n"
               "vendors with accuracies 0.92, 0.85, 0.75, 0.6 and 0.45 (the last always errs to the next\n"
               "class), runs Dawid-Skene single-threaded and prints JSON lines: sizes, iterations,\n"
               "convergence, seconds for the fit, label accuracy of Dawid-Skene and majority vote,\n"
               "and the target (< 1 s) with PASS/FAIL.\n"
               "\n"
               "exit codes: 0 ran and converged (the time target is reported, not enforced),\n"
               "            1 did not converge, 2 usage error\n");
}

double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

std::size_t uniform_index(std::mt19937_64& rng, std::size_t n) {
  return std::min(n - 1, static_cast<std::size_t>(uniform01(rng) * static_cast<double>(n)));
}

bool parse_count(const char* text, unsigned long long& out) {
  char* end = nullptr;
  out = std::strtoull(text, &end, 10);
  return end != text && *end == '\0' && text[0] != '-';
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long long items = 100000, classes = 5, seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    }
    unsigned long long* target = a == "--items"     ? &items
                                 : a == "--classes" ? &classes
                                 : a == "--seed"    ? &seed
                                                    : nullptr;
    if (!target || i + 1 >= argc || !parse_count(argv[++i], *target)) {
      std::fprintf(stderr, "dawid_skene_bench: unknown argument or bad value for '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (items < 1 || items > 100000000 || classes < 2 || classes > 1000) {
    std::fprintf(stderr, "dawid_skene_bench: need 1 <= --items <= 1e8 and 2 <= --classes <= 1000\n");
    return 2;
  }

  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> truth(items);
  std::vector<quality::Judgment> judgments;
  judgments.reserve(items * kJudgmentsPerItem);
  std::array<std::int32_t, kVendors.size()> order{};
  for (std::size_t i = 0; i < items; ++i) {
    const auto t = static_cast<std::int32_t>(uniform_index(rng, classes));
    truth[i] = t;
    for (std::size_t v = 0; v < order.size(); ++v) order[v] = static_cast<std::int32_t>(v);
    // Partial Fisher-Yates: the first kJudgmentsPerItem entries are distinct random vendors.
    for (std::size_t n = 0; n < kJudgmentsPerItem; ++n) {
      std::swap(order[n], order[n + uniform_index(rng, order.size() - n)]);
      const Vendor& v = kVendors[static_cast<std::size_t>(order[n])];
      std::int32_t label = t;
      if (uniform01(rng) >= v.accuracy) {
        if (v.biased) {
          label = static_cast<std::int32_t>((static_cast<unsigned long long>(t) + 1) % classes);
        } else {
          const auto other = static_cast<std::int32_t>(uniform_index(rng, classes - 1));
          label = other < t ? other : other + 1;
        }
      }
      judgments.push_back({static_cast<std::int32_t>(i), order[n], label});
    }
  }

  const auto start = std::chrono::steady_clock::now();
  const auto r = quality::dawid_skene(classes, kVendors.size(), items, judgments);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Majority vote with ties to the lowest class index, the broker's current aggregation.
  std::vector<std::int32_t> votes(items * classes, 0);
  for (const auto& j : judgments)
    ++votes[static_cast<std::size_t>(j.item) * classes + static_cast<std::size_t>(j.label)];
  std::size_t ds_right = 0, mv_right = 0;
  for (std::size_t i = 0; i < items; ++i) {
    const auto row = votes.begin() + static_cast<std::ptrdiff_t>(i * classes);
    const auto mv = std::max_element(row, row + static_cast<std::ptrdiff_t>(classes)) - row;
    mv_right += mv == truth[i];
    ds_right += r.labels[i] == truth[i];
  }

  std::printf("{\"items\": %llu, \"judgments\": %zu, \"classes\": %llu, \"vendors\": %zu, \"seed\": %llu}\n", items,
              judgments.size(), classes, kVendors.size(), seed);
  std::printf("{\"iterations\": %d, \"converged\": %s, \"seconds\": %.4f, \"log_likelihood_per_item\": %.6f}\n",
              r.iterations, r.converged ? "true" : "false", seconds, r.log_likelihood / static_cast<double>(items));
  std::printf("{\"accuracy_dawid_skene\": %.4f, \"accuracy_majority\": %.4f}\n",
              static_cast<double>(ds_right) / static_cast<double>(items),
              static_cast<double>(mv_right) / static_cast<double>(items));
  for (std::size_t v = 0; v < kVendors.size(); ++v)
    std::printf("{\"vendor\": %zu, \"true_accuracy\": %.2f, \"estimated_accuracy\": %.4f, \"biased\": %s}\n", v,
                kVendors[v].accuracy, r.annotator_accuracy[v], kVendors[v].biased ? "true" : "false");
  std::printf("target: < %.0f s %s (%.4f s)\n", kTargetSeconds, seconds < kTargetSeconds ? "PASS" : "FAIL", seconds);
  return r.converged ? 0 : 1;
}
