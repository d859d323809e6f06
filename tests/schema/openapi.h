#ifndef RPCI_TESTS_SCHEMA_OPENAPI_H_
#define RPCI_TESTS_SCHEMA_OPENAPI_H_

// A small validator for the OpenAPI v3 / JSON-Schema subset that rpci's CRDs
// and the Helm chart's values.schema.json use, plus the Kubernetes rules a
// CustomResourceDefinition (apiextensions.k8s.io/v1) must follow. Tests use it
// to check examples and the controller's JSON against the CRDs in deploy/.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace rpci::schema {

// One failed rule: where ("spec.function.bdf", "spec.bars[1].size", "" for the
// root) and why.
struct Violation {
  std::string path;
  std::string message;

  std::string ToString() const;  // "spec.bdf: does not match pattern ..."
};

// Joins violations into one message, one per line.
std::string Describe(const std::vector<Violation>& violations);

// Validates `value` against `schema`. Supported keywords: type, properties,
// required, additionalProperties (bool or schema), items, enum, pattern,
// minimum, maximum, exclusiveMinimum/exclusiveMaximum (OpenAPI booleans),
// minLength, maxLength, minItems, maxItems, minProperties, maxProperties,
// format (date-time, int32, int64, byte), nullable, "$ref" to a definition in
// the root's "definitions" or "$defs" (JSON Schema), x-kubernetes-int-or-string
// and x-kubernetes-preserve-unknown-fields; annotations (description, title,
// default, example, $schema, x-kubernetes-list-type, x-kubernetes-map-type)
// are ignored. An object field no schema describes is a violation ("unknown
// field": the API server would prune it) unless the object preserves unknown
// fields or has additionalProperties. Any other keyword in the schema is
// reported as a violation, so a rule is never silently skipped.
std::vector<Violation> Validate(const nlohmann::json& schema, const nlohmann::json& value);

// Kubernetes' structural-schema rules for a CRD version's openAPIV3Schema:
// every node has a type (except int-or-string / preserve-unknown-fields
// nodes), properties and additionalProperties are exclusive, no allOf/anyOf/
// oneOf/not/$ref, only apiextensions JSONSchemaProps keywords, metadata only
// constrained in name/generateName, enum values match the node's type,
// patterns compile, and required fields are declared.
std::vector<Violation> CheckStructural(const nlohmann::json& schema);

// Checks a CustomResourceDefinition document: apiVersion/kind, name equal to
// "<plural>.<group>", names, scope, exactly one storage version, structural
// schemas, and printer columns whose jsonPath resolves into the schema.
std::vector<Violation> CheckCrd(const nlohmann::json& crd);

// The openAPIV3Schema of `version` in `crd`. NOT_FOUND when absent.
absl::StatusOr<nlohmann::json> CrdSchema(const nlohmann::json& crd, const std::string& version);

// Validates a custom object against its CRD: apiVersion names a served
// version of the CRD's group, kind matches, metadata.name is set, namespace
// is set exactly when the CRD is Namespaced, then the schema. OK, or
// INVALID_ARGUMENT naming the kind, the object and every violation.
absl::Status ValidateObject(const nlohmann::json& crd, const nlohmann::json& object);

// Splits a YAML stream at "---" document markers and parses each non-empty
// document into JSON (YAML 1.2 core scalars; quoted scalars stay strings).
absl::StatusOr<std::vector<nlohmann::json>> ParseYamlDocuments(const std::string& text,
                                                               const std::string& origin);

// Reads a file and parses it with ParseYamlDocuments (JSON is YAML).
absl::StatusOr<std::vector<nlohmann::json>> LoadYamlFile(const std::string& path);

}  // namespace rpci::schema

#endif  // RPCI_TESTS_SCHEMA_OPENAPI_H_
