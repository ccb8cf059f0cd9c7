#pragma once
// What people and tools read about the service itself: the dashboard (GET /dashboard and its
// files under /dashboard/{asset}) and the OpenAPI document (GET /openapi.json), both compiled
// into the binary and answered from memory on the I/O thread. No key is needed to load them; the
// dashboard asks for a viewer key in the page and reads the API with it.
#include "http/router.hpp"

namespace labelbroker::api {

void register_ops_routes(http::Router& router);

}  // namespace labelbroker::api
