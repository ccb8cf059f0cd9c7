# Turns the dashboard (web/dashboard/*) and the OpenAPI document (already converted to JSON by
# yaml2json) into a C++ table, so the broker serves them from memory with no files to ship or to
# get out of step with the binary. Each file carries its SHA-256, the ETag it is served with.
# Text files only (the raw-string delimiter is checked).
file(GLOB files "${WEB_DIR}/*")
list(SORT files)
set(body "")
foreach(f IN LISTS files)
  if(IS_DIRECTORY "${f}")
    message(FATAL_ERROR "web/dashboard is flat; move ${f} out or serve it another way")
  endif()
  get_filename_component(name "${f}" NAME)
  if(NOT name MATCHES "^[A-Za-z0-9][A-Za-z0-9._-]*$")
    message(FATAL_ERROR "dashboard file names are letters, digits, '.', '_' and '-': ${f}")
  endif()
  file(READ "${f}" content)
  file(SHA256 "${f}" digest)
  string(FIND "${content}" ")lbasset\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${f} contains the raw-string delimiter )lbasset\"")
  endif()
  string(APPEND body "    {\"${name}\", \"${digest}\", R\"lbasset(${content})lbasset\"},\n")
endforeach()
file(READ "${OPENAPI_JSON}" openapi)
file(SHA256 "${OPENAPI_JSON}" openapi_digest)
string(FIND "${openapi}" ")lbasset\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${OPENAPI_JSON} contains the raw-string delimiter )lbasset\"")
endif()
set(content "// Generated from web/dashboard/* and docs/openapi.yaml by cmake/embed_assets.cmake; do not edit.
#include \"api/embedded_assets.hpp\"
namespace labelbroker::api {
const std::vector<EmbeddedFile>& dashboard_files() {
  static const std::vector<EmbeddedFile> files = {
${body}  };
  return files;
}
const EmbeddedFile& openapi_document() {
  static const EmbeddedFile document{\"openapi.json\", \"${openapi_digest}\", R\"lbasset(${openapi})lbasset\"};
  return document;
}
}  // namespace labelbroker::api
")
file(WRITE "${OUTPUT}" "${content}")
