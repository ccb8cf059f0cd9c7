#pragma once
// Query parameters and pages of lists: `?limit=N&cursor=C` in, `next_cursor` out. Cursors are
// opaque to clients (base64url of whatever the next query needs), so their contents can change
// without breaking anyone who only passes them back.
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "http/request.hpp"

namespace labelbroker::api {

// 400 bad-query with `detail` (docs/errors.md).
http::Response bad_query(const std::string& detail);
// bad_query naming the first parameter not in `known` (and listing those); nullopt when none.
std::optional<http::Response> reject_unknown_params(const http::Request& request,
                                                    std::initializer_list<std::string_view> known);

std::string encode_cursor(std::string_view raw);
// nullopt for text that is not base64url or is over 2 KiB.
std::optional<std::string> decode_cursor(std::string_view text);

// ?limit=N within [1, max]; `fallback` when absent. nullopt: malformed (answer 400).
std::optional<std::size_t> page_size(const http::Request& request, std::size_t fallback, std::size_t max);

}  // namespace labelbroker::api
