#pragma once
// Options for the in-process HTTP servers tests start (the broker under test, vendor callback
// receivers, webhook receivers): loopback, a free port, no access log.
#include "http/server.hpp"

namespace labelbroker::testing {

inline http::ServerOptions loopback_server_options(int io_threads = 1, int worker_threads = 2) {
  http::ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.io_threads = io_threads;
  o.worker_threads = worker_threads;
  o.access_log = false;
  return o;
}

}  // namespace labelbroker::testing
