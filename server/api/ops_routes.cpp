#include "api/ops_routes.hpp"

#include <string>

#include "api/embedded_assets.hpp"
#include "http/problem.hpp"

namespace labelbroker::api {
namespace {

std::string content_type_of(std::string_view name) {
  const auto dot = name.rfind('.');
  const auto ext = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  if (ext == "html") return "text/html; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  // Browsers refuse module scripts served as anything but a JavaScript type.
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "json") return "application/json";
  if (ext == "txt" || ext == "md") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

// The page only talks to this origin and runs only its own files: a key pasted into it cannot be
// sent elsewhere by injected markup, and no other site may frame it.
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

http::Response serve(const http::Request& request, const EmbeddedFile& file, std::string content_type) {
  const std::string etag = "\"" + std::string(file.sha256.substr(0, 32)) + "\"";
  http::Response r;
  if (http::if_none_match(request, etag)) {
    r.status = 304;
  } else {
    r = http::Response::text(200, std::string(file.body), std::move(content_type));
  }
  r.headers.set("ETag", etag);
  // Revalidated on every load (a 304 is cheap), so a new build's files are picked up at once.
  r.headers.set("Cache-Control", "no-cache");
  r.headers.set("X-Content-Type-Options", "nosniff");
  return r;
}

http::Response serve_dashboard_file(const http::Request& request, std::string_view name) {
  for (const auto& file : dashboard_files()) {
    if (file.name != name) continue;
    auto r = serve(request, file, content_type_of(name));
    r.headers.set("Content-Security-Policy", kContentSecurityPolicy);
    r.headers.set("Referrer-Policy", "no-referrer");
    return r;
  }
  return http::problem(404, "not-found", "Not found", "no dashboard file \"" + std::string(name) + "\"");
}

}  // namespace

void register_ops_routes(http::Router& router) {
  router.add("GET", "/dashboard",
             [](http::Request& request) { return serve_dashboard_file(request, "index.html"); },
             http::Execution::io_thread);
  router.add("GET", "/dashboard/{asset}",
             [](http::Request& request) { return serve_dashboard_file(request, request.path_param("asset")); },
             http::Execution::io_thread);
  router.add("GET", "/openapi.json",
             [](http::Request& request) {
               auto r = serve(request, openapi_document(), "application/json");
               // Generated clients and API explorers on other origins read the document.
               r.headers.set("Access-Control-Allow-Origin", "*");
               return r;
             },
             http::Execution::io_thread);
}

}  // namespace labelbroker::api
