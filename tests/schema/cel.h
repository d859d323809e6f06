#ifndef RPCI_TESTS_SCHEMA_CEL_H_
#define RPCI_TESTS_SCHEMA_CEL_H_

// The part of CEL (the Common Expression Language) that rpci's CRD
// validation rules (x-kubernetes-validations) use, evaluated over JSON the
// way the API server evaluates a rule: `self` is the value of the schema
// node the rule sits on. Supported: string, integer and boolean literals,
// `self` and field selection (self.spec.x), has(self.a.b), size(x) and
// x.size(), `!`, `&&`, `||`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `+` (string
// concatenation and integer addition), parentheses. Selecting a field that is
// absent is an error ("no such key"), as in CEL. A rule outside this subset
// fails to compile, so a rule is never silently skipped.

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace rpci::schema {

// Evaluates `rule` with `self` bound to `self`. The result must be a bool:
// INVALID_ARGUMENT for a rule that does not parse or uses what this subset
// lacks; FAILED_PRECONDITION for a runtime error (no such key, mismatched
// types).
absl::StatusOr<bool> EvaluateRule(const std::string& rule, const nlohmann::json& self);

}  // namespace rpci::schema

#endif  // RPCI_TESTS_SCHEMA_CEL_H_
