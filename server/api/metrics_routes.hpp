#pragma once
// GET /metrics: the Prometheus text exposition (docs/metrics.md lists every series).
//
// A scrape never touches the database. Three kinds of numbers are rendered from memory:
//   - HTTP requests, counted lock-free by metrics::HttpMetrics as the server answers them;
//   - this process's state: breakers and vendor errors (jobs::VendorBook), the pool, /proc;
//   - cluster-wide numbers from PostgreSQL (jobs, assignments, ledger, vendor quality and share),
//     read every `refresh` by a background thread in one read-only transaction into an immutable
//     snapshot that is swapped in whole, so a scrape sees one consistent reading.
// A failed refresh keeps the previous snapshot (its age grows) and counts an error.
//
// Thread safety: render() may run on any number of threads at once, while the refresher runs.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "config/config.hpp"
#include "db/metrics_store.hpp"
#include "db/pool.hpp"
#include "http/router.hpp"
#include "jobs/engine.hpp"
#include "metrics/http_metrics.hpp"

namespace labelbroker::api {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

class MetricsService {
 public:
  // `http` may be null (no request series); everything passed must outlive the service.
  MetricsService(db::ConnectionPool& pool, jobs::Dispatch& dispatch, const metrics::HttpMetrics* http,
                 config::MetricsConfig config, config::QualityConfig quality);
  ~MetricsService();
  MetricsService(const MetricsService&) = delete;
  MetricsService& operator=(const MetricsService&) = delete;

  // Starts the refresher (the first reading is taken at once); stop() joins it. Idempotent.
  void start();
  void stop();
  // One refresh on the calling thread; false (and an error counted) if the database failed.
  bool refresh_now();

  // The whole page.
  std::string render() const;

  const config::MetricsConfig& config() const { return config_; }

 private:
  struct Snapshot {
    db::ClusterStats stats;
    std::chrono::steady_clock::time_point taken_at;
    double duration_seconds = 0;  // how long the reading took
  };
  void run();

  db::ConnectionPool& pool_;
  jobs::Dispatch& dispatch_;
  const metrics::HttpMetrics* http_;
  config::MetricsConfig config_;
  config::QualityConfig quality_;

  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
  std::atomic<std::uint64_t> refresh_errors_{0};
  mutable std::atomic<std::size_t> last_size_{16 * 1024};  // the last page's size, to reserve the next

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// Adds GET /metrics to `router`; with config().require_key, any valid API key is needed.
void register_metrics_route(http::Router& router, db::ConnectionPool& pool, MetricsService& metrics);

}  // namespace labelbroker::api
