#pragma once
// Structured logging: one JSON object per line on stderr.
//
// Thread safety: every function may be called from any thread; each line is written with a single
// write(2) so lines from different threads never interleave.
// Secrets must never be passed in fields; use redact_url() for connection strings.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace labelbroker::common::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

// Throws std::invalid_argument for an unknown name.
Level parse_level(std::string_view name);
void set_level(Level level);
bool enabled(Level level);

// Writes {"ts": ..., "level": ..., "msg": message, ...fields} when level is enabled.
void write(Level level, std::string_view message, const nlohmann::json& fields = nlohmann::json::object());

inline void debug(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  write(Level::debug, m, f);
}
inline void info(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  write(Level::info, m, f);
}
inline void warn(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  write(Level::warn, m, f);
}
inline void error(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  write(Level::error, m, f);
}

// Writes an already-serialised JSON object as one line (used by the access log, which builds its
// line without going through nlohmann::json to stay cheap on the request path).
void write_raw_line(std::string line);

// postgresql://user:secret@host/db -> postgresql://user:***@host/db; also hides password=... in
// key/value connection strings.
std::string redact_url(std::string_view url);

}  // namespace labelbroker::common::log

namespace labelbroker::common::log {

// Appends s as a JSON string literal (with quotes). Control characters are escaped and bytes that
// are not valid UTF-8 become U+FFFD, so any request path can be logged safely.
void append_json_string(std::string& out, std::string_view s);

}  // namespace labelbroker::common::log
