#pragma once
// Pages of lists: `?limit=N&cursor=C` in, `next_cursor` out. Cursors are opaque to clients
// (base64url of whatever the next query needs), so their contents can change without breaking
// anyone who only passes them back.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "http/request.hpp"

namespace labelbroker::api {

std::string encode_cursor(std::string_view raw);
// nullopt for text that is not base64url or is over 2 KiB.
std::optional<std::string> decode_cursor(std::string_view text);

// ?limit=N within [1, max]; `fallback` when absent. nullopt: malformed (answer 400).
std::optional<std::size_t> page_size(const http::Request& request, std::size_t fallback, std::size_t max);

}  // namespace labelbroker::api
