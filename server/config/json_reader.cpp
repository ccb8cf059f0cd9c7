#include "config/json_reader.hpp"

namespace labelbroker::config {

using nlohmann::json;

const char* json_type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "value";
  }
}

JsonReader::JsonReader(const json& object, std::string path, std::string source, const EnvLookup& env)
    : object_(object), path_(std::move(path)), source_(std::move(source)), env_(env) {
  if (!object_.is_object()) fail(path_, std::string("expected an object, got ") + json_type_name(object_));
}

const json* JsonReader::find(const std::string& key) {
  seen_.insert(key);
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &*it;
}

const json& JsonReader::require(const std::string& key) {
  const json* v = find(key);
  if (!v) fail(child_path(key), "is required");
  return *v;
}

void JsonReader::string(const std::string& key, std::string& out) {
  if (const json* v = find(key)) {
    if (!v->is_string()) fail(child_path(key), std::string("expected a string, got ") + json_type_name(*v));
    out = v->get<std::string>();
  }
}

void JsonReader::boolean(const std::string& key, bool& out) {
  if (const json* v = find(key)) {
    if (!v->is_boolean()) fail(child_path(key), std::string("expected a boolean, got ") + json_type_name(*v));
    out = v->get<bool>();
  }
}

void JsonReader::number(const std::string& key, double& out, double min, double max) {
  if (const json* v = find(key)) {
    if (!v->is_number()) fail(child_path(key), std::string("expected a number, got ") + json_type_name(*v));
    const double n = v->get<double>();
    if (n < min || n > max) fail(child_path(key), "must be between " + json(min).dump() + " and " + json(max).dump());
    out = n;
  }
}

void JsonReader::string_list(const std::string& key, std::vector<std::string>& out) {
  if (const json* v = find(key)) {
    if (!v->is_array()) fail(child_path(key), std::string("expected an array of strings, got ") + json_type_name(*v));
    std::vector<std::string> values;
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string())
        fail(child_path(key) + "[" + std::to_string(i) + "]",
             std::string("expected a string, got ") + json_type_name((*v)[i]));
      values.push_back((*v)[i].get<std::string>());
    }
    out = std::move(values);
  }
}

void JsonReader::read_integer(const std::string& key, long long& out, long long min, long long max) {
  if (const json* v = find(key)) {
    if (!v->is_number_integer()) fail(child_path(key), std::string("expected an integer, got ") + json_type_name(*v));
    if (v->is_number_unsigned() && v->get<unsigned long long>() > static_cast<unsigned long long>(max))
      fail(child_path(key), "must be between " + std::to_string(min) + " and " + std::to_string(max));
    long long n = v->get<long long>();
    if (n < min || n > max)
      fail(child_path(key), "must be between " + std::to_string(min) + " and " + std::to_string(max));
    out = n;
  }
}

void JsonReader::millis(const std::string& key, std::chrono::milliseconds& out, long long min, long long max) {
  long long n = out.count();
  read_integer(key, n, min, max);
  out = std::chrono::milliseconds(n);
}

void JsonReader::secret(const std::string& key, Secret& out) {
  const json* v = find(key);
  if (!v) return;
  const std::string where = child_path(key);
  if (v->is_string()) {
    out = Secret(v->get<std::string>(), "config");
    return;
  }
  if (!v->is_object()) fail(where, std::string("expected a string or {\"env\": \"NAME\"}, got ") + json_type_name(*v));
  JsonReader ref(*v, where, source_, env_);
  std::string name;
  ref.string("env", name);
  ref.finish();
  if (name.empty()) fail(where + ".env", "must name an environment variable");
  auto value = env_(name);
  if (!value || value->empty()) fail(where, "environment variable " + name + " is not set");
  out = Secret(*value, "env:" + name);
}

JsonReader JsonReader::object(const std::string& key) {
  static const json empty = json::object();
  const json* v = find(key);
  return JsonReader(v ? *v : empty, child_path(key), source_, env_);
}

void JsonReader::finish() const {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (!seen_.count(it.key())) fail(child_path(it.key()), "unknown key");
  }
}

void JsonReader::fail(const std::string& path, const std::string& reason) const {
  throw ConfigError(source_ + ": " + path + ": " + reason);
}

}  // namespace labelbroker::config
