#pragma once
// The HTTP/1.1 server: a listener, one session per connection, the Router for dispatch.
//
// Threads: `io_threads` run Asio (accept, read, write, and io_thread routes); `worker_threads` run
// every other handler, so blocking work (the database) never stalls an I/O thread. Each connection
// is served on its own strand.
// Shutdown: begin_shutdown() (or SIGINT/SIGTERM once handle_signals() was called) marks the server
// draining (so /readyz answers 503), keeps accepting for `drain_delay`, then closes the listener and
// idle connections, lets requests in flight finish for up to `shutdown_grace`, and stops. wait()
// returns when that is done. A second signal cuts the grace period short.
// Beast and Asio stay inside server.cpp; this header is safe to include anywhere.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "http/router.hpp"

namespace labelbroker::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0: any free port; read it back with port()
  int io_threads = 1;
  int worker_threads = 4;
  std::size_t body_limit_bytes = 8 * 1024 * 1024;
  std::size_t header_limit_bytes = 16 * 1024;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{60000};
  std::chrono::milliseconds idle_timeout{75000};
  std::chrono::milliseconds write_timeout{60000};
  std::chrono::milliseconds drain_delay{0};
  std::chrono::milliseconds shutdown_grace{20000};
  // After answering a request whose body was not read (413, 400), keep reading and discarding for
  // this long so the client sees the response instead of a connection reset.
  std::chrono::milliseconds linger{2000};
  bool access_log = true;
  // Told about every request once its response is written (or writing it failed): the route it
  // matched (null: none), the status, and the seconds since its header started. Runs on an I/O
  // thread, so it must be quick and never block (metrics::HttpMetrics counts with atomics).
  std::function<void(const Route* route, int status, double seconds)> observer;
};

// Shared with handlers that report readiness.
struct Lifecycle {
  std::atomic<bool> draining{false};
};

class Server {
 public:
  // The router and lifecycle must outlive the server.
  Server(ServerOptions options, const Router& router, Lifecycle& lifecycle);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens without serving yet, so port() is known before routes are complete.
  // Throws std::runtime_error if the address is unusable.
  void bind();
  // Binds if needed, then starts the threads and accepts connections. The router must not change
  // after this.
  void start();
  std::uint16_t port() const;

  // Turns SIGINT and SIGTERM into begin_shutdown(). Call after start().
  void handle_signals();
  void begin_shutdown();
  // Blocks until shutdown has completed. Returns true if every request in flight finished.
  // After handle_signals(), SIGINT and SIGTERM stay blocked in the calling thread afterwards, so a
  // late signal cannot interrupt the process's clean exit.
  bool wait();

  std::size_t open_connections() const;

  class Impl;  // defined in server.cpp, where the sessions use it too

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace labelbroker::http
