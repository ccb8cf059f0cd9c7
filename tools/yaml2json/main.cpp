// yaml2json: converts one YAML document to JSON, for the build (docs/openapi.yaml becomes the
// /openapi.json the broker serves). YAML's core schema decides scalar types: a quoted or block
// scalar is a string; a plain one is null, a boolean, an integer or a float when it reads as
// one, otherwise a string. Anchors and aliases resolve as yaml-cpp reads them.
//
// usage: yaml2json INPUT.yaml OUTPUT.json     exit codes: 0 ok, 1 unreadable or invalid YAML, 2 usage
#include <cstdio>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

namespace {

using json = nlohmann::ordered_json;  // keeps the document's own order

json plain_scalar(const std::string& s) {
  static const std::regex integer(R"([-+]?[0-9]+)");
  static const std::regex floating(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (std::regex_match(s, integer)) {
    try {
      return std::stoll(s);
    } catch (const std::out_of_range&) {
      return std::stod(s);
    }
  }
  if (std::regex_match(s, floating)) return std::stod(s);
  return s;
}

json convert(const YAML::Node& node, const std::string& path) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted and block scalars "!" and plain ones "?".
      return node.Tag() == "?" ? plain_scalar(node.Scalar()) : json(node.Scalar());
    case YAML::NodeType::Sequence: {
      json out = json::array();
      std::size_t i = 0;
      for (const auto& item : node) out.push_back(convert(item, path + "/" + std::to_string(i++)));
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) throw std::runtime_error(path + ": a mapping key must be a scalar");
        const auto key = entry.first.Scalar();
        if (out.contains(key)) throw std::runtime_error(path + ": duplicate key \"" + key + "\"");
        out[key] = convert(entry.second, path + "/" + key);
      }
      return out;
    }
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: yaml2json INPUT.yaml OUTPUT.json\n");
    return 2;
  }
  try {
    const auto document = convert(YAML::LoadFile(argv[1]), "");
    const std::string temp = std::string(argv[2]) + ".tmp";
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      out << document.dump() << '\n';
      if (!out.flush()) throw std::runtime_error("cannot write " + temp);
    }
    if (std::rename(temp.c_str(), argv[2]) != 0) throw std::runtime_error(std::string("cannot write ") + argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "yaml2json: %s: %s\n", argv[1], e.what());
    return 1;
  }
  return 0;
}
