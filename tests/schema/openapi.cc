#include "tests/schema/openapi.h"

#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "tests/schema/cel.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config.h"

namespace rpci::schema {
namespace {

using nlohmann::json;

// Keywords Validate() understands that only annotate.
const std::set<std::string>& AnnotationKeywords() {
  static const std::set<std::string> k = {"description", "title", "default", "example", "$schema", "definitions", "$defs",
                                          "x-kubernetes-list-type", "x-kubernetes-map-type"};
  return k;
}

// Keywords Validate() checks.
const std::set<std::string>& CheckedKeywords() {
  static const std::set<std::string> k = {
      "type",          "properties",       "required",      "additionalProperties", "items",
      "enum",          "pattern",          "minimum",       "maximum",              "exclusiveMinimum",
      "exclusiveMaximum", "minLength",     "maxLength",     "minItems",             "maxItems",
      "minProperties", "maxProperties",    "format",        "nullable",
      "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-map-keys",
      "x-kubernetes-validations"};
  return k;
}

// Keywords apiextensions.k8s.io/v1 JSONSchemaProps accepts at all.
const std::set<std::string>& KubeKeywords() {
  static const std::set<std::string> k = {
      "type", "format", "title", "description", "default", "enum", "maximum", "minimum",
      "exclusiveMaximum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems",
      "minItems", "uniqueItems", "multipleOf", "maxProperties", "minProperties", "required", "items",
      "properties", "additionalProperties", "nullable", "example", "externalDocs",
      "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
      "x-kubernetes-embedded-resource", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
      "x-kubernetes-map-type", "x-kubernetes-validations"};
  return k;
}

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

std::string Index(const std::string& path, size_t i) { return absl::StrCat(path, "[", i, "]"); }

bool Flag(const json& schema, const char* key) {
  auto it = schema.find(key);
  return it != schema.end() && it->is_boolean() && it->get<bool>();
}

bool TypeMatches(const std::string& type, const json& value) {
  if (type == "object") return value.is_object();
  if (type == "array") return value.is_array();
  if (type == "string") return value.is_string();
  if (type == "boolean") return value.is_boolean();
  if (type == "integer") {
    if (value.is_number_integer()) return true;
    return value.is_number_float() && std::floor(value.get<double>()) == value.get<double>();
  }
  if (type == "number") return value.is_number();
  if (type == "null") return value.is_null();
  return false;
}

bool MatchesRegex(const std::string& pattern, const std::string& text, std::string* error) {
  try {
    return std::regex_search(text, std::regex(pattern, std::regex::ECMAScript));
  } catch (const std::regex_error& e) {
    *error = absl::StrCat("pattern ", pattern, " does not compile: ", e.what());
    return false;
  }
}

std::string FormatError(const std::string& format, const json& value) {
  if (format == "date-time") {
    static const std::regex kRfc3339(
        R"(^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$)");
    if (!value.is_string() || !std::regex_match(value.get<std::string>(), kRfc3339)) {
      return "is not an RFC 3339 date-time";
    }
  } else if (format == "int32" || format == "int64") {
    if (!value.is_number_integer()) return "";
    const double v = value.get<double>();
    const double limit = format == "int32" ? 2147483648.0 : 9223372036854775808.0;
    if (v < -limit || v >= limit) return absl::StrCat("does not fit ", format);
  } else if (format == "byte") {
    std::string decoded;
    if (!value.is_string() || !absl::Base64Unescape(value.get<std::string>(), &decoded)) {
      return "is not base64";
    }
  } else {
    return absl::StrCat("unsupported format \"", format, "\"");
  }
  return "";
}

// What a validation pass carries: the root schema (for "$ref") and the
// violations found so far.
struct Pass {
  const json* root;
  std::vector<Violation>* out;
  void Add(const std::string& path, const std::string& message) { out->push_back({path, message}); }
};

void ValidateAt(const json& schema, const json& value, const std::string& path, Pass* pass);

// x-kubernetes-validations: each rule (CEL) with `self` = this node's value.
// A false rule reports its message (or the rule), as the API server does.
void ValidateRules(const json& schema, const json& value, const std::string& path, Pass* pass) {
  for (const json& r : schema.value("x-kubernetes-validations", json::array())) {
    const std::string rule = r.is_object() ? r.value("rule", "") : "";
    absl::StatusOr<bool> ok = EvaluateRule(rule, value);
    if (!ok.ok()) {
      pass->Add(path, std::string(ok.status().message()));
    } else if (!*ok) {
      const std::string message = r.value("message", "");
      pass->Add(path, message.empty() ? absl::StrCat("failed rule: ", rule) : message);
    }
  }
}

void ValidateObjectFields(const json& schema, const json& value, const std::string& path, Pass* pass) {
  std::vector<Violation>* out = pass->out;
  const json properties = schema.value("properties", json::object());
  for (const json& name : schema.value("required", json::array())) {
    if (name.is_string() && !value.contains(name.get<std::string>())) {
      out->push_back({Join(path, name.get<std::string>()), "required field is missing"});
    }
  }
  auto additional = schema.find("additionalProperties");
  for (auto it = value.begin(); it != value.end(); ++it) {
    const std::string child = Join(path, it.key());
    if (properties.contains(it.key())) {
      ValidateAt(properties[it.key()], *it, child, pass);
    } else if (additional != schema.end() && additional->is_object()) {
      ValidateAt(*additional, *it, child, pass);
    } else if (additional != schema.end() && additional->is_boolean()) {
      if (!additional->get<bool>()) out->push_back({child, "unknown field (additionalProperties is false)"});
    } else if (!Flag(schema, "x-kubernetes-preserve-unknown-fields")) {
      out->push_back({child, "unknown field (the API server would prune it)"});
    }
  }
  const auto count = static_cast<int64_t>(value.size());
  if (schema.contains("minProperties") && count < schema["minProperties"].get<int64_t>()) {
    out->push_back({path, absl::StrCat("has ", count, " fields, fewer than minProperties ", schema["minProperties"].dump())});
  }
  if (schema.contains("maxProperties") && count > schema["maxProperties"].get<int64_t>()) {
    out->push_back({path, absl::StrCat("has ", count, " fields, more than maxProperties ", schema["maxProperties"].dump())});
  }
}

// A local reference to a named definition ("#/definitions/x",
// "#/$defs/x"): `value` checked against it. False when `schema` has no $ref.
bool ValidateRef(const json& schema, const json& value, const std::string& path, Pass* pass) {
  if (!schema.is_object() || !schema.contains("$ref")) return false;
  const std::string ref = schema["$ref"].is_string() ? schema["$ref"].get<std::string>() : "";
  for (const char* prefix : {"#/definitions/", "#/$defs/"}) {
    const std::string p(prefix);
    const std::string section = p.substr(2, p.size() - 3);
    if (ref.rfind(p, 0) == 0 && pass->root->value(section, json::object()).contains(ref.substr(p.size()))) {
      ValidateAt((*pass->root)[section][ref.substr(p.size())], value, path, pass);
      return true;
    }
  }
  pass->out->push_back({path, absl::StrCat("schema $ref \"", ref, "\" does not name a definition")});
  return true;
}

// Whether `value` has the type `schema` gives (the remaining rules assume
// it); a mismatch is reported.
bool ValidateType(const json& schema, const json& value, const std::string& path, std::vector<Violation>* out) {
  if (Flag(schema, "x-kubernetes-int-or-string")) {
    if (!value.is_string() && !TypeMatches("integer", value)) {
      out->push_back({path, absl::StrCat("expected integer or string, got ", JsonTypeName(value))});
      return false;
    }
  } else if (schema.contains("type")) {
    // A type name, or (JSON Schema) a list of them.
    const json types = schema["type"].is_array() ? schema["type"] : json::array({schema["type"]});
    bool matches = false;
    std::vector<std::string> names;
    for (const json& t : types) {
      names.push_back(t.is_string() ? t.get<std::string>() : t.dump());
      matches = matches || TypeMatches(names.back(), value);
    }
    if (!matches) {
      out->push_back({path, absl::StrCat("expected ", absl::StrJoin(names, " or "), ", got ", JsonTypeName(value))});
      return false;  // the remaining rules assume the type
    }
  }
  return true;
}

// A string's pattern and length.
void ValidateString(const json& schema, const std::string& text, const std::string& path,
                    std::vector<Violation>* out) {
  const auto length = static_cast<int64_t>(text.size());
  if (schema.contains("pattern")) {
    std::string error;
    const std::string pattern = schema["pattern"].get<std::string>();
    if (!MatchesRegex(pattern, text, &error)) {
      out->push_back({path, error.empty() ? absl::StrCat("\"", text, "\" does not match pattern ", pattern) : error});
    }
  }
  if (schema.contains("minLength") && length < schema["minLength"].get<int64_t>()) {
    out->push_back({path, absl::StrCat("\"", text, "\" is shorter than minLength ", schema["minLength"].dump())});
  }
  if (schema.contains("maxLength") && length > schema["maxLength"].get<int64_t>()) {
    out->push_back({path, absl::StrCat("\"", text, "\" is longer than maxLength ", schema["maxLength"].dump())});
  }
}

// A number's minimum and maximum.
void ValidateNumber(const json& schema, const json& value, const std::string& path, std::vector<Violation>* out) {
  const double v = value.get<double>();
  if (schema.contains("minimum")) {
    const double min = schema["minimum"].get<double>();
    if (Flag(schema, "exclusiveMinimum") ? v <= min : v < min) {
      out->push_back({path, absl::StrCat(value.dump(), " is less than the minimum ", schema["minimum"].dump())});
    }
  }
  if (schema.contains("maximum")) {
    const double max = schema["maximum"].get<double>();
    if (Flag(schema, "exclusiveMaximum") ? v >= max : v > max) {
      out->push_back({path, absl::StrCat(value.dump(), " is more than the maximum ", schema["maximum"].dump())});
    }
  }
}

// Items of a list-type map are keyed by the map keys: each item has them,
// no two share them.
void ValidateListMapKeys(const json& schema, const json& value, const std::string& path,
                         std::vector<Violation>* out) {
  std::set<std::string> seen;
  for (size_t i = 0; i < value.size(); ++i) {
    json key = json::array();
    for (const json& k : schema.value("x-kubernetes-list-map-keys", json::array())) {
      const std::string name = k.get<std::string>();
      if (!value[i].is_object() || !value[i].contains(name)) {
        out->push_back({Index(path, i), absl::StrCat("list map key \"", name, "\" is missing")});
      }
      key.push_back(value[i].is_object() ? value[i].value(name, json()) : json());
    }
    if (!seen.insert(key.dump()).second) {
      out->push_back({Index(path, i), absl::StrCat("duplicate list map key ", key.dump())});
    }
  }
}

// An array's length and items.
void ValidateArray(const json& schema, const json& value, const std::string& path, Pass* pass) {
  std::vector<Violation>* out = pass->out;
  const auto count = static_cast<int64_t>(value.size());
  if (schema.contains("minItems") && count < schema["minItems"].get<int64_t>()) {
    out->push_back({path, absl::StrCat("has ", count, " items, fewer than minItems ", schema["minItems"].dump())});
  }
  if (schema.contains("maxItems") && count > schema["maxItems"].get<int64_t>()) {
    out->push_back({path, absl::StrCat("has ", count, " items, more than maxItems ", schema["maxItems"].dump())});
  }
  if (schema.contains("items")) {
    for (size_t i = 0; i < value.size(); ++i) ValidateAt(schema["items"], value[i], Index(path, i), pass);
  }
  if (schema.value("x-kubernetes-list-type", "") == "map") ValidateListMapKeys(schema, value, path, out);
}

void ValidateAt(const json& schema, const json& value, const std::string& path, Pass* pass) {
  std::vector<Violation>* out = pass->out;
  if (ValidateRef(schema, value, path, pass)) return;
  if (!schema.is_object()) {
    out->push_back({path, "schema is not an object"});
    return;
  }
  for (auto it = schema.begin(); it != schema.end(); ++it) {
    if (!CheckedKeywords().count(it.key()) && !AnnotationKeywords().count(it.key())) {
      out->push_back({path, absl::StrCat("schema keyword \"", it.key(), "\" is not supported by this validator")});
    }
  }
  if (value.is_null() && Flag(schema, "nullable")) return;
  if (!ValidateType(schema, value, path, out)) return;
  if (schema.contains("enum")) {
    bool found = false;
    for (const json& option : schema["enum"]) found = found || option == value;
    if (!found) out->push_back({path, absl::StrCat("value ", value.dump(), " is not one of ", schema["enum"].dump())});
  }
  if (value.is_string()) ValidateString(schema, value.get<std::string>(), path, out);
  if (schema.contains("format")) {
    const std::string error = FormatError(schema["format"].get<std::string>(), value);
    if (!error.empty()) out->push_back({path, absl::StrCat(value.dump(), " ", error)});
  }
  if (value.is_number()) ValidateNumber(schema, value, path, out);
  if (value.is_array()) ValidateArray(schema, value, path, pass);
  if (value.is_object()) ValidateObjectFields(schema, value, path, pass);
  ValidateRules(schema, value, path, pass);
}

std::string TypeOf(const json& schema) {
  auto it = schema.find("type");
  return it != schema.end() && it->is_string() ? it->get<std::string>() : "";
}

// The keywords, type, properties and items of one structural schema node
// (`type`: its type, or empty).
void CheckStructuralShape(const json& schema, const std::string& type, const std::string& path,
                          std::vector<Violation>* out) {
  for (auto it = schema.begin(); it != schema.end(); ++it) {
    if (!KubeKeywords().count(it.key())) {
      out->push_back({path, absl::StrCat("keyword \"", it.key(), "\" is not allowed in a structural schema")});
    }
  }
  static const std::set<std::string> kTypes = {"object", "array", "string", "integer", "number", "boolean"};
  if (type.empty()) {
    if (!Flag(schema, "x-kubernetes-int-or-string") && !Flag(schema, "x-kubernetes-preserve-unknown-fields")) {
      out->push_back({path, "type is missing"});
    }
  } else if (!kTypes.count(type)) {
    out->push_back({path, absl::StrCat("type \"", type, "\" is not a Kubernetes schema type")});
  }
  if (schema.contains("properties") && schema.contains("additionalProperties")) {
    out->push_back({path, "properties and additionalProperties are mutually exclusive"});
  }
  if ((schema.contains("properties") || schema.contains("additionalProperties")) && type != "object") {
    out->push_back({path, "properties given on a non-object"});
  }
  if (schema.contains("items") && (type != "array" || !schema["items"].is_object())) {
    out->push_back({path, "items must be one schema on an array"});
  }
  if (type == "array" && !schema.contains("items")) out->push_back({path, "array without items"});
}

// Each x-kubernetes-validations entry has a rule that compiles.
void CheckStructuralRules(const json& schema, const std::string& path, std::vector<Violation>* out) {
  for (const json& r : schema.value("x-kubernetes-validations", json::array())) {
    if (!r.is_object() || !r.contains("rule") || !r["rule"].is_string()) {
      out->push_back({path, "x-kubernetes-validations entry needs a rule"});
      continue;
    }
    // Evaluated on null: a rule that parses fails at run time, one that
    // does not is INVALID_ARGUMENT.
    absl::StatusOr<bool> compiled = EvaluateRule(r["rule"].get<std::string>(), json());
    if (compiled.status().code() == absl::StatusCode::kInvalidArgument) {
      out->push_back({path, std::string(compiled.status().message())});
    }
  }
}

// The pattern compiles, enum values have the type, the format is one
// Kubernetes knows.
void CheckStructuralValues(const json& schema, const std::string& type, const std::string& path,
                           std::vector<Violation>* out) {
  if (schema.contains("pattern")) {
    std::string error;
    MatchesRegex(schema["pattern"].get<std::string>(), "", &error);
    if (!error.empty()) out->push_back({path, error});
    if (type != "string") out->push_back({path, "pattern on a non-string"});
  }
  if (schema.contains("enum")) {
    for (const json& option : schema["enum"]) {
      if (!type.empty() && !TypeMatches(type, option)) {
        out->push_back({path, absl::StrCat("enum value ", option.dump(), " is not of type ", type)});
      }
    }
  }
  if (schema.contains("format")) {
    static const std::set<std::string> kFormats = {"date-time", "int32", "int64", "byte", "date", "duration",
                                                   "uri", "email", "hostname", "ipv4", "ipv6", "uuid"};
    if (!kFormats.count(schema["format"].get<std::string>())) {
      out->push_back({path, absl::StrCat("format \"", schema["format"].get<std::string>(), "\" is not one Kubernetes knows")});
    }
  }
}

void CheckStructuralAt(const json& schema, const std::string& path, bool is_metadata, std::vector<Violation>* out) {
  if (!schema.is_object()) {
    out->push_back({path, "schema is not an object"});
    return;
  }
  const std::string type = TypeOf(schema);
  CheckStructuralShape(schema, type, path, out);
  CheckStructuralRules(schema, path, out);
  CheckStructuralValues(schema, type, path, out);
  const json properties = schema.value("properties", json::object());
  for (const json& name : schema.value("required", json::array())) {
    if (!name.is_string() || !properties.contains(name.get<std::string>())) {
      out->push_back({path, absl::StrCat("required field ", name.dump(), " is not declared in properties")});
    }
  }
  if (is_metadata) {
    for (auto it = properties.begin(); it != properties.end(); ++it) {
      if (it.key() != "name" && it.key() != "generateName") {
        out->push_back({Join(path, it.key()), "metadata may only constrain name and generateName"});
      }
    }
  }
  for (auto it = properties.begin(); it != properties.end(); ++it) {
    CheckStructuralAt(*it, Join(path, it.key()), path.empty() && it.key() == "metadata", out);
  }
  if (schema.contains("additionalProperties") && schema["additionalProperties"].is_object()) {
    CheckStructuralAt(schema["additionalProperties"], Join(path, "*"), false, out);
  }
  if (schema.contains("items") && schema["items"].is_object()) CheckStructuralAt(schema["items"], Index(path, 0), false, out);
}

// The schema node a printer column's simple jsonPath (".status.phase")
// reaches, or null when it leaves the schema. Paths into metadata are taken
// as valid (ObjectMeta is not part of the CRD schema).
json ResolveColumnPath(const json& root, const std::string& json_path, std::string* error) {
  if (json_path.empty() || json_path[0] != '.') {
    *error = "must start with \".\"";
    return nullptr;
  }
  std::vector<std::string> parts = absl::StrSplit(json_path.substr(1), '.');
  if (parts[0] == "metadata") return json{{"type", "string"}};
  json node = root;
  for (const std::string& part : parts) {
    if (part.empty() || part.find_first_of("[]?@()") != std::string::npos) {
      *error = absl::StrCat("only simple paths are checked, got \"", part, "\"");
      return nullptr;
    }
    const json properties = node.value("properties", json::object());
    if (properties.contains(part)) {
      node = properties[part];
    } else if (node.contains("additionalProperties") && node["additionalProperties"].is_object()) {
      node = node["additionalProperties"];
    } else if (Flag(node, "x-kubernetes-preserve-unknown-fields")) {
      return json::object();  // unknown shape below: accept
    } else {
      *error = absl::StrCat("field \"", part, "\" is not in the schema");
      return nullptr;
    }
  }
  return node;
}

}  // namespace

std::string Violation::ToString() const { return path.empty() ? message : absl::StrCat(path, ": ", message); }

std::string Describe(const std::vector<Violation>& violations) {
  std::vector<std::string> lines;
  for (const Violation& v : violations) lines.push_back(v.ToString());
  return absl::StrJoin(lines, "\n");
}

std::vector<Violation> Validate(const json& schema, const json& value) {
  std::vector<Violation> out;
  Pass pass{&schema, &out};
  ValidateAt(schema, value, "", &pass);
  return out;
}

std::vector<Violation> CheckStructural(const json& schema) {
  std::vector<Violation> out;
  if (TypeOf(schema) != "object") out.push_back({"", "the root must be of type object"});
  CheckStructuralAt(schema, "", false, &out);
  return out;
}

absl::StatusOr<json> CrdSchema(const json& crd, const std::string& version) {
  const json versions = crd.value("spec", json::object()).value("versions", json::array());
  for (const json& v : versions) {
    if (v.value("name", "") != version) continue;
    const json schema = v.value("schema", json::object()).value("openAPIV3Schema", json());
    if (!schema.is_object()) break;
    return schema;
  }
  return absl::NotFoundError(absl::StrCat("CRD ", crd.value("metadata", json::object()).value("name", "?"),
                                          ": no openAPIV3Schema for version ", version));
}

std::vector<Violation> CheckCrd(const json& crd) {
  std::vector<Violation> out;
  if (!crd.is_object()) return {{"", "CRD is not an object"}};
  if (crd.value("apiVersion", "") != "apiextensions.k8s.io/v1") out.push_back({"apiVersion", "must be apiextensions.k8s.io/v1"});
  if (crd.value("kind", "") != "CustomResourceDefinition") out.push_back({"kind", "must be CustomResourceDefinition"});
  const json spec = crd.value("spec", json::object());
  const json names = spec.value("names", json::object());
  const std::string group = spec.value("group", "");
  const std::string plural = names.value("plural", "");
  if (group.empty() || plural.empty()) out.push_back({"spec", "group and names.plural are required"});
  const std::string name = crd.value("metadata", json::object()).value("name", "");
  if (name != absl::StrCat(plural, ".", group)) {
    out.push_back({"metadata.name", absl::StrCat("\"", name, "\" must be <plural>.<group> = ", plural, ".", group)});
  }
  static const std::regex kDnsLabel("^[a-z]([-a-z0-9]*[a-z0-9])?$");
  for (const char* key : {"plural", "singular"}) {
    if (!std::regex_match(names.value(key, ""), kDnsLabel)) {
      out.push_back({Join("spec.names", key), "must be a lowercase DNS label"});
    }
  }
  for (const json& s : names.value("shortNames", json::array())) {
    if (!s.is_string() || !std::regex_match(s.get<std::string>(), kDnsLabel)) {
      out.push_back({"spec.names.shortNames", absl::StrCat(s.dump(), " must be a lowercase DNS label")});
    }
  }
  if (names.value("kind", "").empty()) out.push_back({"spec.names.kind", "required"});
  if (names.contains("listKind") && names["listKind"] != names.value("kind", "") + "List") {
    out.push_back({"spec.names.listKind", "must be <kind>List"});
  }
  const std::string scope = spec.value("scope", "");
  if (scope != "Cluster" && scope != "Namespaced") out.push_back({"spec.scope", "must be Cluster or Namespaced"});
  const json versions = spec.value("versions", json::array());
  int storage = 0;
  for (size_t i = 0; i < versions.size(); ++i) {
    const json& v = versions[i];
    const std::string vpath = Index("spec.versions", i);
    if (v.value("storage", false)) ++storage;
    const json schema = v.value("schema", json::object()).value("openAPIV3Schema", json());
    if (!schema.is_object()) {
      out.push_back({Join(vpath, "schema.openAPIV3Schema"), "required"});
      continue;
    }
    for (Violation s : CheckStructural(schema)) {
      s.path = Join(Join(vpath, "schema.openAPIV3Schema"), s.path);
      out.push_back(s);
    }
    const json columns = v.value("additionalPrinterColumns", json::array());
    static const std::map<std::string, std::string> kColumnTypes = {
        {"string", "string"}, {"integer", "integer"}, {"number", "number"}, {"boolean", "boolean"}, {"date", "string"}};
    for (size_t c = 0; c < columns.size(); ++c) {
      const std::string cpath = Index(Join(vpath, "additionalPrinterColumns"), c);
      const std::string type = columns[c].value("type", "");
      if (columns[c].value("name", "").empty()) out.push_back({cpath, "name is required"});
      if (!kColumnTypes.count(type)) {
        out.push_back({cpath, absl::StrCat("type \"", type, "\" is not a printer column type")});
        continue;
      }
      std::string error;
      json node = ResolveColumnPath(schema, columns[c].value("jsonPath", ""), &error);
      if (node.is_null()) {
        out.push_back({cpath, absl::StrCat("jsonPath ", columns[c].value("jsonPath", ""), ": ", error)});
      } else if (node.contains("type") && TypeOf(node) != kColumnTypes.at(type)) {
        out.push_back({cpath, absl::StrCat("column type ", type, " does not fit schema type ", TypeOf(node))});
      }
    }
  }
  if (storage != 1) out.push_back({"spec.versions", absl::StrCat("exactly one version must be storage, got ", storage)});
  return out;
}

absl::Status ValidateObject(const json& crd, const json& object) {
  const json spec = crd.value("spec", json::object());
  const std::string kind = spec.value("names", json::object()).value("kind", "");
  const json meta = object.is_object() ? object.value("metadata", json::object()) : json::object();
  const std::string label = absl::StrCat(kind, " ", meta.value("namespace", ""),
                                         meta.contains("namespace") ? "/" : "", meta.value("name", "?"));
  std::vector<Violation> out;
  if (!object.is_object()) return absl::InvalidArgumentError(absl::StrCat(kind, ": object is not a JSON object"));
  const std::string api_version = object.value("apiVersion", "");
  std::string version;
  for (const json& v : spec.value("versions", json::array())) {
    if (api_version == absl::StrCat(spec.value("group", ""), "/", v.value("name", "")) && v.value("served", false)) {
      version = v.value("name", "");
    }
  }
  if (version.empty()) out.push_back({"apiVersion", absl::StrCat("\"", api_version, "\" is not a served version")});
  if (object.value("kind", "") != kind) out.push_back({"kind", absl::StrCat("must be ", kind)});
  if (meta.value("name", "").empty()) out.push_back({"metadata.name", "required"});
  const bool namespaced = spec.value("scope", "") == "Namespaced";
  if (namespaced && meta.value("namespace", "").empty()) out.push_back({"metadata.namespace", "required for a Namespaced kind"});
  if (!namespaced && meta.contains("namespace")) out.push_back({"metadata.namespace", "not allowed on a cluster-scoped kind"});
  if (!version.empty()) {
    absl::StatusOr<json> schema = CrdSchema(crd, version);
    if (!schema.ok()) return schema.status();
    // The API server owns apiVersion, kind and metadata; the schema governs the rest.
    json body = object;
    json root = *schema;
    for (const char* owned : {"apiVersion", "kind", "metadata"}) {
      if (!root.value("properties", json::object()).contains(owned)) body.erase(owned);
    }
    if (body.contains("metadata")) {
      // A structural schema may only constrain these two.
      json constrained = json::object();
      for (const char* key : {"name", "generateName"}) {
        if (meta.contains(key)) constrained[key] = meta[key];
      }
      body["metadata"] = constrained;
    }
    for (const Violation& v : Validate(root, body)) out.push_back(v);
  }
  if (out.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(label, ":\n", Describe(out)));
}

absl::StatusOr<std::vector<json>> ParseYamlDocuments(const std::string& text, const std::string& origin) {
  std::vector<json> docs;
  std::vector<std::string> current;
  int first_line = 1, line_no = 0;
  auto flush = [&]() -> absl::Status {
    std::string doc = absl::StrJoin(current, "\n");
    current.clear();
    if (doc.find_first_not_of(" \t\n") == std::string::npos) return absl::OkStatus();
    absl::StatusOr<json> parsed = ParseConfigText(doc, absl::StrCat(origin, " (document from line ", first_line, ")"));
    if (!parsed.ok()) return parsed.status();
    if (!parsed->is_null()) docs.push_back(*std::move(parsed));
    return absl::OkStatus();
  };
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line == "---" || line.rfind("--- ", 0) == 0) {
      if (absl::Status s = flush(); !s.ok()) return s;
      first_line = line_no + 1;
      continue;
    }
    current.emplace_back(line);
  }
  if (absl::Status s = flush(); !s.ok()) return s;
  return docs;
}

absl::StatusOr<std::vector<json>> LoadYamlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buf;
  buf << in.rdbuf();
  return ParseYamlDocuments(buf.str(), path);
}

}  // namespace rpci::schema
