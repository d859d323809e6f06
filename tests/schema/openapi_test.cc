#include "tests/schema/openapi.h"
#include "tests/schema/cel.h"

#include "gtest/gtest.h"

namespace rpci::schema {
namespace {

using nlohmann::json;

json Yaml(const std::string& text) {
  absl::StatusOr<std::vector<json>> docs = ParseYamlDocuments(text, "test");
  EXPECT_TRUE(docs.ok()) << docs.status();
  return docs.ok() && !docs->empty() ? docs->front() : json();
}

const json& DeviceSchema() {
  static const json schema = Yaml(R"(
type: object
required: [spec]
properties:
  spec:
    type: object
    required: [bdf]
    properties:
      bdf: {type: string, pattern: '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$'}
      backend: {type: string, enum: [emu, vfio]}
      numaNode: {type: integer, minimum: -1, maximum: 64}
      name: {type: string, minLength: 1, maxLength: 8}
      since: {type: string, format: date-time}
      token: {type: string, format: byte}
      bars:
        type: array
        maxItems: 2
        items:
          type: object
          properties:
            size: {type: integer, minimum: 1}
      labels:
        type: object
        additionalProperties: {type: string}
      function:
        type: object
        x-kubernetes-preserve-unknown-fields: true
        properties:
          vendorId: {type: integer}
)");
  return schema;
}

std::string Errors(const json& value) { return Describe(Validate(DeviceSchema(), value)); }

TEST(Validate, AcceptsAValidObject) {
  json value = Yaml(R"(
spec:
  bdf: "0000:3b:00.0"
  backend: emu
  numaNode: -1
  name: gpu
  since: "2024-05-01T10:00:00Z"
  token: "aGVsbG8="
  bars: [{size: 4096}]
  labels: {zone: a}
  function: {vendorId: 4660, anythingElse: [1, 2]}
)");
  EXPECT_EQ(Errors(value), "");
}

TEST(Validate, NamesTheFieldThatBreaksAPattern) {
  EXPECT_EQ(Errors(json{{"spec", {{"bdf", "3b:00.0"}}}}),
            "spec.bdf: \"3b:00.0\" does not match pattern ^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$");
}

TEST(Validate, ReportsMissingRequiredFields) {
  EXPECT_EQ(Errors(json::object()), "spec: required field is missing");
  EXPECT_EQ(Errors(json{{"spec", json::object()}}), "spec.bdf: required field is missing");
}

TEST(Validate, ReportsWrongTypesEnumsAndRanges) {
  json value = {{"spec",
                 {{"bdf", "0000:00:01.0"},
                  {"backend", "sysfs-bar"},
                  {"numaNode", 65},
                  {"name", ""},
                  {"bars", json::array({{{"size", 0}}, {{"size", "big"}}, json::object()})},
                  {"labels", {{"zone", 1}}}}}};
  std::vector<Violation> v = Validate(DeviceSchema(), value);
  std::vector<std::string> paths;
  for (const Violation& x : v) paths.push_back(x.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"spec.backend", "spec.bars", "spec.bars[0].size", "spec.bars[1].size",
                                             "spec.labels.zone", "spec.name", "spec.numaNode"}))
      << Describe(v);
}

TEST(Validate, UnknownFieldsAreViolationsUnlessPreserved) {
  EXPECT_EQ(Errors(json{{"spec", {{"bdf", "0000:00:01.0"}, {"bfd", "typo"}}}}),
            "spec.bfd: unknown field (the API server would prune it)");
  EXPECT_EQ(Errors(json{{"spec", {{"bdf", "0000:00:01.0"}, {"function", {{"x", 1}}}}}}), "");
  // Declared fields inside a preserving object are still checked.
  EXPECT_EQ(Errors(json{{"spec", {{"bdf", "0000:00:01.0"}, {"function", {{"vendorId", "0x10de"}}}}}}),
            "spec.function.vendorId: expected integer, got string");
}

TEST(Validate, ChecksFormats) {
  EXPECT_EQ(Errors(json{{"spec", {{"bdf", "0000:00:01.0"}, {"since", "yesterday"}}}}),
            "spec.since: \"yesterday\" is not an RFC 3339 date-time");
  EXPECT_EQ(Errors(json{{"spec", {{"bdf", "0000:00:01.0"}, {"token", "!!"}}}}), "spec.token: \"!!\" is not base64");
}

TEST(Validate, RefusesKeywordsItCannotCheck) {
  json schema = {{"type", "string"}, {"oneOf", json::array()}};
  EXPECT_EQ(Describe(Validate(schema, "x")), "schema keyword \"oneOf\" is not supported by this validator");
}

TEST(Validate, ListMapsNeedUniqueKeys) {
  json schema = {{"type", "array"},
                 {"x-kubernetes-list-type", "map"},
                 {"x-kubernetes-list-map-keys", {"type"}},
                 {"items", {{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}}}};
  EXPECT_EQ(Describe(Validate(schema, json::array({{{"type", "A"}}, {{"type", "B"}}}))), "");
  EXPECT_EQ(Describe(Validate(schema, json::array({{{"type", "A"}}, {{"type", "A"}}, json::object()}))),
            "[1]: duplicate list map key [\"A\"]\n[2]: list map key \"type\" is missing");
}

TEST(Validate, AdditionalPropertiesFalseRejectsUnknownKeys) {
  json schema = {{"type", "object"}, {"additionalProperties", false}, {"properties", {{"a", {{"type", "integer"}}}}}};
  EXPECT_EQ(Describe(Validate(schema, json{{"a", 1}, {"b", 2}})), "b: unknown field (additionalProperties is false)");
}

TEST(Validate, AcceptsAnyOfAListOfTypes) {
  json schema = {{"type", {"string", "integer"}}};
  EXPECT_EQ(Describe(Validate(schema, "100m")), "");
  EXPECT_EQ(Describe(Validate(schema, 2)), "");
  EXPECT_EQ(Describe(Validate(schema, true)), "expected string or integer, got boolean");
}

TEST(Validate, FollowsLocalDefinitionRefs) {
  json schema = {{"type", "object"},
                 {"definitions", {{"port", {{"type", "integer"}, {"minimum", 1}, {"maximum", 65535}}}}},
                 {"properties", {{"http", {{"$ref", "#/definitions/port"}}}, {"grpc", {{"$ref", "#/definitions/nope"}}}}}};
  EXPECT_EQ(Describe(Validate(schema, json{{"http", 8080}})), "");
  EXPECT_EQ(Describe(Validate(schema, json{{"http", 0}, {"grpc", 1}})),
            "grpc: schema $ref \"#/definitions/nope\" does not name a definition\n"
            "http: 0 is less than the minimum 1");
}

TEST(CheckStructural, AcceptsAStructuralSchema) { EXPECT_EQ(Describe(CheckStructural(DeviceSchema())), ""); }

TEST(CheckStructural, FindsEveryRuleBroken) {
  json schema = Yaml(R"(
type: object
required: [spec, missing]
properties:
  metadata:
    type: object
    properties:
      labels: {type: object}
  spec:
    type: object
    additionalProperties: {type: string}
    properties:
      a: {description: no type}
      b: {type: string, enum: [1]}
      c: {type: array}
      d: {type: string, anyOf: []}
      e: {type: text}
)");
  std::vector<Violation> v = CheckStructural(schema);
  std::set<std::string> messages;
  for (const Violation& x : v) messages.insert(x.ToString());
  EXPECT_EQ(messages, (std::set<std::string>{
                          "required field \"missing\" is not declared in properties",
                          "metadata.labels: metadata may only constrain name and generateName",
                          "spec: properties and additionalProperties are mutually exclusive",
                          "spec.a: type is missing",
                          "spec.b: enum value 1 is not of type string",
                          "spec.c: array without items",
                          "spec.d: keyword \"anyOf\" is not allowed in a structural schema",
                          "spec.e: type \"text\" is not a Kubernetes schema type",
                      }));
}

json Crd() {
  return Yaml(R"(
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.io}
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList, shortNames: [wd]}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, minimum: 1}
)");
}

TEST(CheckCrd, AcceptsAGoodCrd) { EXPECT_EQ(Describe(CheckCrd(Crd())), ""); }

TEST(CheckCrd, RejectsBadNamesAndColumns) {
  json crd = Crd();
  crd["metadata"]["name"] = "widget.example.io";
  crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] = ".spec.sise";
  crd["spec"]["versions"][0]["additionalPrinterColumns"][1]["type"] = "time";
  crd["spec"]["versions"][0]["storage"] = false;
  std::vector<Violation> v = CheckCrd(crd);
  ASSERT_EQ(v.size(), 4u) << Describe(v);
  EXPECT_EQ(v[0].path, "metadata.name");
  EXPECT_EQ(v[1].ToString(),
            "spec.versions[0].additionalPrinterColumns[0]: jsonPath .spec.sise: field \"sise\" is not in the schema");
  EXPECT_EQ(v[2].path, "spec.versions[0].additionalPrinterColumns[1]");
  EXPECT_EQ(v[3].path, "spec.versions");
}

TEST(ValidateObject, ChecksEnvelopeAndSchema) {
  json ok = {{"apiVersion", "example.io/v1"}, {"kind", "Widget"},
             {"metadata", {{"name", "w"}, {"namespace", "default"}, {"labels", {{"a", "b"}}}}},
             {"spec", {{"size", 2}}}};
  EXPECT_TRUE(ValidateObject(Crd(), ok).ok()) << ValidateObject(Crd(), ok);
  json bad = ok;
  bad["apiVersion"] = "example.io/v2";
  bad["metadata"].erase("namespace");
  bad["spec"]["size"] = 0;
  absl::Status s = ValidateObject(Crd(), bad);
  EXPECT_EQ(s.message(),
            "Widget w:\napiVersion: \"example.io/v2\" is not a served version\n"
            "metadata.namespace: required for a Namespaced kind");
  bad["apiVersion"] = "example.io/v1";
  EXPECT_EQ(ValidateObject(Crd(), bad).message(),
            "Widget w:\nmetadata.namespace: required for a Namespaced kind\nspec.size: 0 is less than the minimum 1");
}

TEST(ParseYamlDocuments, SplitsStreamsAndKeepsQuotedScalarsStrings) {
  absl::StatusOr<std::vector<json>> docs = ParseYamlDocuments("a: '0x10'\nb: 10\n---\n---\nc: true\n", "t");
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[0]["a"], "0x10");
  EXPECT_EQ((*docs)[0]["b"], 10);
  EXPECT_EQ((*docs)[1]["c"], true);
  absl::StatusOr<std::vector<json>> broken = ParseYamlDocuments("a: [1\n", "broken.yaml");
  EXPECT_FALSE(broken.ok());
}

TEST(EvaluateRule, EvaluatesTheSubsetCrdRulesUse) {
  const json pool = {{"metadata", {{"name", "emu"}}}, {"spec", {{"resourceName", "rpci.io/emu"}, {"n", 3}}}};
  const std::string rule =
      "!has(self.spec) || !has(self.spec.resourceName) || self.spec.resourceName == 'rpci.io/' + self.metadata.name";
  EXPECT_EQ(EvaluateRule(rule, pool).value(), true);
  json other = pool;
  other["spec"]["resourceName"] = "rpci.io/gpu";
  EXPECT_EQ(EvaluateRule(rule, other).value(), false);
  other["spec"].erase("resourceName");
  EXPECT_EQ(EvaluateRule(rule, other).value(), true);
  EXPECT_EQ(EvaluateRule("self.spec.n + 1 >= 4 && size(self.metadata.name) == 3", pool).value(), true);
  EXPECT_EQ(EvaluateRule("self.metadata.name.size() < 3", pool).value(), false);
  EXPECT_EQ(EvaluateRule("self.spec.missing == 1", pool).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(EvaluateRule("self.spec.n == 1 ||", pool).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluateRule("self.spec.all(x, x)", pool).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Validate, ReportsAFailedValidationRuleWithItsMessage) {
  const json schema = json::parse(R"({"type": "object",
      "x-kubernetes-validations": [{"rule": "self.a == self.b", "message": "a must equal b"}],
      "properties": {"a": {"type": "string"}, "b": {"type": "string"}}})");
  EXPECT_TRUE(Validate(schema, {{"a", "x"}, {"b", "x"}}).empty());
  std::vector<Violation> v = Validate(schema, {{"a", "x"}, {"b", "y"}});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].message, "a must equal b");
  EXPECT_TRUE(CheckStructural(schema).empty()) << Describe(CheckStructural(schema));
  json broken = schema;
  broken["x-kubernetes-validations"][0]["rule"] = "self.a.exists(x, x)";
  EXPECT_FALSE(CheckStructural(broken).empty());
}

}  // namespace
}  // namespace rpci::schema
