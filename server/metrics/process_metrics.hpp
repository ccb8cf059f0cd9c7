#pragma once
// The standard process_* metrics (as Prometheus client libraries export them), read from /proc on
// each call: a few small file reads and a stat, about 10 us. Before Linux 6.2, counting the open
// descriptors lists /proc/self/fd instead, about 0.2 us per descriptor. On a system without /proc
// the series are left out.
#include "metrics/exposition.hpp"

namespace labelbroker::metrics {

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_start_time_seconds, process_open_fds, process_max_fds. Thread-safe.
void render_process_metrics(Writer& out);

}  // namespace labelbroker::metrics
