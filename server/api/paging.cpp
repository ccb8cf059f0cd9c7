#include "api/paging.hpp"

#include <cstdint>
#include <cstring>

#include "common/strings.hpp"
#include "http/problem.hpp"

namespace labelbroker::api {
namespace {

constexpr char kBase64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

}  // namespace

http::Response bad_query(const std::string& detail) {
  return http::problem(400, "bad-query", "Bad query parameter", detail);
}

std::optional<http::Response> reject_unknown_params(const http::Request& request,
                                                    std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : request.query) {
    bool listed = false;
    std::string names;
    for (auto k : known) {
      listed = listed || key == k;
      names += (names.empty() ? "" : ", ") + std::string(k);
    }
    if (!listed) return bad_query("unknown query parameter \"" + key + "\" (" + names + ")");
  }
  return std::nullopt;
}

std::string encode_cursor(std::string_view raw) {
  std::string out;
  std::uint32_t bits = 0;
  int count = 0;
  for (unsigned char c : raw) {
    bits = (bits << 8) | c;
    count += 8;
    while (count >= 6) {
      count -= 6;
      out += kBase64Url[(bits >> count) & 0x3F];
    }
  }
  if (count > 0) out += kBase64Url[(bits << (6 - count)) & 0x3F];
  return out;
}

std::optional<std::string> decode_cursor(std::string_view text) {
  if (text.empty() || text.size() > 2048) return std::nullopt;
  std::string out;
  std::uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    const char* p = std::strchr(kBase64Url, c);
    if (c == '\0' || !p) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(p - kBase64Url);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xFF);
    }
  }
  return out;
}

std::optional<std::size_t> page_size(const http::Request& request, std::size_t fallback, std::size_t max) {
  auto text = request.query_param("limit");
  if (!text) return fallback;
  const auto value = common::parse_uint(*text);
  if (!value || *value < 1 || *value > max) return std::nullopt;
  return static_cast<std::size_t>(*value);
}

}  // namespace labelbroker::api
