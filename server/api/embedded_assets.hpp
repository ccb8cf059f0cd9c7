#pragma once
// Files compiled into the binary (cmake/embed_assets.cmake): the dashboard from web/dashboard/
// and the OpenAPI document from docs/openapi.yaml, as JSON.
#include <string_view>
#include <vector>

namespace labelbroker::api {

struct EmbeddedFile {
  std::string_view name;    // file name, e.g. "dashboard.js"
  std::string_view sha256;  // hex digest of body
  std::string_view body;
};

const std::vector<EmbeddedFile>& dashboard_files();
const EmbeddedFile& openapi_document();

}  // namespace labelbroker::api
