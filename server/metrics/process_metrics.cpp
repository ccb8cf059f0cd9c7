#include "metrics/process_metrics.hpp"

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

namespace labelbroker::metrics {
namespace {

// The whole (small) file, or nothing.
std::optional<std::string> read_small_file(const char* path) {
  std::FILE* f = std::fopen(path, "re");
  if (!f) return std::nullopt;
  std::string out;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) out.append(buffer, n);
  std::fclose(f);
  return out;
}

// Seconds since the epoch at which the system booted (/proc/stat's btime).
std::optional<double> boot_time() {
  static const std::optional<double> cached = []() -> std::optional<double> {
    auto stat = read_small_file("/proc/stat");
    if (!stat) return std::nullopt;
    auto at = stat->find("\nbtime ");
    if (at == std::string::npos) return std::nullopt;
    return std::strtod(stat->c_str() + at + 7, nullptr);
  }();
  return cached;
}

struct SelfStat {
  double cpu_seconds = 0;
  double start_time = 0;  // seconds since the epoch
  double virtual_bytes = 0;
  double resident_bytes = 0;
};

std::optional<SelfStat> self_stat() {
  auto text = read_small_file("/proc/self/stat");
  if (!text) return std::nullopt;
  // Fields after the command name (which may hold spaces and parentheses) start after the last ')'.
  auto close = text->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  const char* p = text->c_str() + close + 2;
  // Field 3 (state) is at p; utime is field 14, stime 15, starttime 22, vsize 23, rss 24.
  unsigned long long fields[25] = {};
  int field = 3;
  while (*p && field <= 24) {
    if (field >= 14) fields[field] = std::strtoull(p, nullptr, 10);
    const char* space = std::strchr(p, ' ');
    if (!space) break;
    p = space + 1;
    ++field;
  }
  if (field < 24) return std::nullopt;
  static const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  static const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  SelfStat s;
  s.cpu_seconds = static_cast<double>(fields[14] + fields[15]) / ticks;
  if (auto boot = boot_time()) s.start_time = *boot + static_cast<double>(fields[22]) / ticks;
  s.virtual_bytes = static_cast<double>(fields[23]);
  s.resident_bytes = static_cast<double>(fields[24]) * page;
  return s;
}

std::optional<double> open_fds() {
  // Since Linux 6.2 the size of /proc/self/fd is the number of open descriptors: one stat instead
  // of listing a directory that costs about 0.2 us per descriptor (0.45 ms with 2,000 vendor and
  // database connections open, most of a scrape).
  struct stat st {};
  if (::stat("/proc/self/fd", &st) == 0 && st.st_size > 0) return static_cast<double>(st.st_size);
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return std::nullopt;
  double n = 0;
  while (auto* entry = ::readdir(dir))
    if (entry->d_name[0] != '.') ++n;
  ::closedir(dir);
  return n - 1;  // the directory's own descriptor
}

std::optional<double> max_fds() {
  auto limits = read_small_file("/proc/self/limits");
  if (!limits) return std::nullopt;
  auto at = limits->find("Max open files");
  if (at == std::string::npos) return std::nullopt;
  const char* p = limits->c_str() + at + std::strlen("Max open files");
  while (*p == ' ') ++p;
  if (std::strncmp(p, "unlimited", 9) == 0) return std::nullopt;
  return std::strtod(p, nullptr);
}

}  // namespace

void render_process_metrics(Writer& out) {
  if (auto s = self_stat()) {
    out.family("process_cpu_seconds_total", Type::counter, "Total user and system CPU time spent in seconds.");
    out.sample("process_cpu_seconds_total", {}, s->cpu_seconds);
    out.family("process_resident_memory_bytes", Type::gauge, "Resident memory size in bytes.");
    out.sample("process_resident_memory_bytes", {}, s->resident_bytes);
    out.family("process_virtual_memory_bytes", Type::gauge, "Virtual memory size in bytes.");
    out.sample("process_virtual_memory_bytes", {}, s->virtual_bytes);
    if (s->start_time > 0) {
      out.family("process_start_time_seconds", Type::gauge, "Start time of the process since unix epoch in seconds.");
      out.sample("process_start_time_seconds", {}, s->start_time);
    }
  }
  if (auto n = open_fds()) {
    out.family("process_open_fds", Type::gauge, "Number of open file descriptors.");
    out.sample("process_open_fds", {}, *n);
  }
  if (auto n = max_fds()) {
    out.family("process_max_fds", Type::gauge, "Maximum number of open file descriptors.");
    out.sample("process_max_fds", {}, *n);
  }
}

}  // namespace labelbroker::metrics
