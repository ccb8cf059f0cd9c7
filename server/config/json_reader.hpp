#pragma once
// Strict reading of one JSON object of configuration: typed getters that remember which keys were
// read, so finish() can reject the rest as unknown; every error is a ConfigError naming the JSON
// path ("$.vendors[2].prices.classification: expected an integer, got string"). Vendor adapter
// factories use it to validate their own sections.
#include <nlohmann/json.hpp>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace labelbroker::config {

const char* json_type_name(const nlohmann::json& v);

class JsonReader {
 public:
  // `object` and `env` must outlive the reader. Throws if `object` is not an object.
  JsonReader(const nlohmann::json& object, std::string path, std::string source, const EnvLookup& env);

  const nlohmann::json* find(const std::string& key);
  std::string child_path(const std::string& key) const { return path_ + "." + key; }
  const std::string& path() const { return path_; }

  // Each getter leaves `out` alone when the key is absent.
  void string(const std::string& key, std::string& out);
  void boolean(const std::string& key, bool& out);
  void number(const std::string& key, double& out, double min, double max);
  void string_list(const std::string& key, std::vector<std::string>& out);
  void millis(const std::string& key, std::chrono::milliseconds& out, long long min, long long max);
  // A string, or {"env": "NAME"} read from the environment.
  void secret(const std::string& key, Secret& out);

  template <typename Int>
  void integer(const std::string& key, Int& out, long long min, long long max) {
    long long n = static_cast<long long>(out);
    read_integer(key, n, min, max);
    out = static_cast<Int>(n);
  }

  // A required key: fails when absent.
  const nlohmann::json& require(const std::string& key);

  // A nested object; an absent key reads as {}.
  JsonReader object(const std::string& key);

  // Rejects keys nobody read.
  void finish() const;

  [[noreturn]] void fail(const std::string& path, const std::string& reason) const;

 private:
  void read_integer(const std::string& key, long long& out, long long min, long long max);

  const nlohmann::json& object_;
  std::string path_;
  std::string source_;
  const EnvLookup& env_;
  std::set<std::string> seen_;
};

}  // namespace labelbroker::config
