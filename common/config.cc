#include "common/config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "yaml-cpp/yaml.h"

namespace rpci {

struct ConfigReader::Node {
  nlohmann::json object;
  std::string path;  // "" at the top, "fabric" or "rules[2]" below
  std::set<std::string> seen;
  std::vector<std::shared_ptr<Node>> children;
};

struct ConfigReader::Shared {
  std::string origin;
  std::vector<std::string> errors;
};

namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Converts a YAML scalar by YAML 1.2 core schema rules; quoted scalars stay strings.
nlohmann::json ScalarToJson(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (node.Tag() == "!") return text;  // quoted
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  if (text == "null" || text == "~" || text.empty()) return nullptr;
  nlohmann::json number = nlohmann::json::parse(text, nullptr, false);
  if (!number.is_discarded() && number.is_number()) return number;
  return text;
}

// Bounds for YAML that expands through aliases: a self-referencing anchor
// ("a: &x {b: *x}") never ends, and nested aliases grow exponentially.
constexpr int kMaxYamlDepth = 64;
constexpr int kMaxYamlNodes = 1 << 20;

absl::Status YamlToJson(const YAML::Node& node, int depth, int* budget, nlohmann::json* out) {
  if (depth > kMaxYamlDepth) {
    return absl::InvalidArgumentError(absl::StrCat("nested deeper than ", kMaxYamlDepth,
                                                   " levels (recursive alias?)"));
  }
  if (--*budget < 0) {
    return absl::InvalidArgumentError(absl::StrCat("more than ", kMaxYamlNodes, " nodes (alias bomb?)"));
  }
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      *out = nullptr;
      return absl::OkStatus();
    case YAML::NodeType::Scalar:
      *out = ScalarToJson(node);
      return absl::OkStatus();
    case YAML::NodeType::Sequence:
      *out = nlohmann::json::array();
      for (const auto& item : node) {
        nlohmann::json value;
        absl::Status s = YamlToJson(item, depth + 1, budget, &value);
        if (!s.ok()) return s;
        out->push_back(std::move(value));
      }
      return absl::OkStatus();
    case YAML::NodeType::Map:
      *out = nlohmann::json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) return absl::InvalidArgumentError("map key is not a scalar");
        nlohmann::json value;
        absl::Status s = YamlToJson(kv.second, depth + 1, budget, &value);
        if (!s.ok()) return s;
        (*out)[kv.first.Scalar()] = std::move(value);
      }
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace

std::string JsonTypeName(const nlohmann::json& value) {
  if (value.is_boolean()) return "boolean";
  if (value.is_number()) return "number";
  return value.type_name();
}

absl::StatusOr<nlohmann::json> ParseConfigText(const std::string& text, const std::string& origin) {
  try {
    nlohmann::json out;
    int budget = kMaxYamlNodes;
    absl::Status s = YamlToJson(YAML::Load(text), 0, &budget, &out);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(origin, ": ", s.message()));
    return out;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": line ", e.mark.line + 1, ", column ",
                                                   e.mark.column + 1, ": ", e.msg));
  }
}

absl::StatusOr<nlohmann::json> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  if (EndsWith(path, ".json")) {
    nlohmann::json j = nlohmann::json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
    return j;
  }
  return ParseConfigText(buf.str(), path);
}

ConfigReader::ConfigReader(const nlohmann::json& object, std::string origin)
    : node_(std::make_shared<Node>()), shared_(std::make_shared<Shared>()) {
  shared_->origin = std::move(origin);
  if (object.is_null()) {
    node_->object = nlohmann::json::object();  // an empty file is an empty config
  } else if (!object.is_object()) {
    shared_->errors.push_back(
        absl::StrCat("top level: expected an object, got ", JsonTypeName(object)));
    node_->object = nlohmann::json::object();
  } else {
    node_->object = object;
  }
}

ConfigReader::ConfigReader(std::shared_ptr<Node> node, std::shared_ptr<Shared> shared)
    : node_(std::move(node)), shared_(std::move(shared)) {}

std::string ConfigReader::PathOf(const std::string& key) const {
  return node_->path.empty() ? key : absl::StrCat(node_->path, ".", key);
}

void ConfigReader::AddError(const std::string& key, const std::string& message) {
  shared_->errors.push_back(absl::StrCat(PathOf(key), ": ", message));
}

const nlohmann::json* ConfigReader::Lookup(const std::string& key) {
  node_->seen.insert(key);
  auto it = node_->object.find(key);
  if (it == node_->object.end() || it->is_null()) return nullptr;
  return &*it;
}

bool ConfigReader::Has(const std::string& key) const { return node_->object.contains(key); }

void ConfigReader::String(const std::string& key, std::string* out) {
  const nlohmann::json* v = Lookup(key);
  if (v == nullptr) return;
  if (!v->is_string()) return AddError(key, "expected string, got " + JsonTypeName(*v));
  *out = v->get<std::string>();
}

void ConfigReader::Bool(const std::string& key, bool* out) {
  const nlohmann::json* v = Lookup(key);
  if (v == nullptr) return;
  if (!v->is_boolean()) return AddError(key, "expected boolean, got " + JsonTypeName(*v));
  *out = v->get<bool>();
}

void ConfigReader::Int(const std::string& key, int64_t* out, int64_t min, int64_t max) {
  const nlohmann::json* v = Lookup(key);
  if (v == nullptr) return;
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(max)) {
    return AddError(key, absl::StrCat("must be at most ", max));
  }
  if (!v->is_number_integer()) return AddError(key, "expected integer, got " + JsonTypeName(*v));
  int64_t value = v->get<int64_t>();
  if (value < min) return AddError(key, absl::StrCat("must be at least ", min, ", got ", value));
  if (value > max) return AddError(key, absl::StrCat("must be at most ", max, ", got ", value));
  *out = value;
}

void ConfigReader::Double(const std::string& key, double* out) {
  const nlohmann::json* v = Lookup(key);
  if (v == nullptr) return;
  if (!v->is_number()) return AddError(key, "expected number, got " + JsonTypeName(*v));
  *out = v->get<double>();
}

void ConfigReader::StringList(const std::string& key, std::vector<std::string>* out) {
  const nlohmann::json* v = Lookup(key);
  if (v == nullptr) return;
  if (!v->is_array()) return AddError(key, "expected list of strings, got " + JsonTypeName(*v));
  std::vector<std::string> values;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      return AddError(absl::StrCat(key, "[", i, "]"), "expected string, got " + JsonTypeName((*v)[i]));
    }
    values.push_back((*v)[i].get<std::string>());
  }
  *out = std::move(values);
}

void ConfigReader::Enum(const std::string& key, const std::vector<std::string>& allowed,
                        std::string* out) {
  std::string value;
  size_t errors_before = shared_->errors.size();
  String(key, &value);
  if (shared_->errors.size() != errors_before || !Has(key) || node_->object[key].is_null()) return;
  for (const auto& a : allowed) {
    if (a == value) {
      *out = value;
      return;
    }
  }
  AddError(key, absl::StrCat("\"", value, "\" is not one of: ", absl::StrJoin(allowed, ", ")));
}

void ConfigReader::Raw(const std::string& key, nlohmann::json* out) {
  const nlohmann::json* v = Lookup(key);
  if (v != nullptr) *out = *v;
}

ConfigReader ConfigReader::Object(const std::string& key) {
  auto child = std::make_shared<Node>();
  child->path = PathOf(key);
  child->object = nlohmann::json::object();
  const nlohmann::json* v = Lookup(key);
  if (v != nullptr) {
    if (v->is_object()) {
      child->object = *v;
    } else {
      AddError(key, "expected object, got " + JsonTypeName(*v));
    }
  }
  node_->children.push_back(child);
  return ConfigReader(child, shared_);
}

std::vector<ConfigReader> ConfigReader::ObjectList(const std::string& key) {
  std::vector<ConfigReader> out;
  const nlohmann::json* v = Lookup(key);
  if (v == nullptr) return out;
  if (!v->is_array()) {
    AddError(key, "expected list of objects, got " + JsonTypeName(*v));
    return out;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    std::string item = absl::StrCat(key, "[", i, "]");
    if (!(*v)[i].is_object()) {
      AddError(item, "expected object, got " + JsonTypeName((*v)[i]));
      continue;
    }
    auto child = std::make_shared<Node>();
    child->path = PathOf(item);
    child->object = (*v)[i];
    node_->children.push_back(child);
    out.push_back(ConfigReader(child, shared_));
  }
  return out;
}

absl::Status ConfigReader::Finish() const {
  std::vector<std::string> problems = shared_->errors;
  std::vector<const Node*> stack = {node_.get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    for (const auto& [key, value] : n->object.items()) {
      if (n->seen.count(key) == 0) {
        problems.push_back(absl::StrCat(n->path.empty() ? key : n->path + "." + key, ": unknown key"));
      }
    }
    for (const auto& c : n->children) stack.push_back(c.get());
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(shared_->origin, ": ", absl::StrJoin(problems, "; ")));
}

}  // namespace rpci
