#ifndef RPCI_COMMON_TESTING_EXPOSITION_FORMAT_H_
#define RPCI_COMMON_TESTING_EXPOSITION_FORMAT_H_

// A strict check of the Prometheus text exposition format, version 0.0.4, as
// the official format description states it
// (prometheus.io/docs/instrumenting/exposition_formats, "Text format details"):
//   - lines end in '\n'; empty lines and '#' lines other than HELP and TYPE
//     are ignored;
//   - "# HELP <name> <text>" (text escapes only \\ and \n) and
//     "# TYPE <name> counter|gauge|histogram|summary|untyped", each at most
//     once per name, TYPE before the family's first sample;
//   - a sample is name[{label="value",...}] value [timestamp] with name
//     [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* (not
//     starting "__"), label values escaping \\ \" \n, the value a Go float
//     (NaN, +Inf, -Inf allowed), the timestamp an int64 of milliseconds;
//   - all lines of one family form a single group; no series twice; a label
//     name at most once per sample;
//   - a histogram x has x_bucket{le=...} series ending in le="+Inf" with
//     non-decreasing counts as le grows, x_sum and x_count, and x_count equals
//     the +Inf bucket; a summary x has x{quantile=...}, x_sum and x_count.
// Written once against that text, not against our serializer's output.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rpci::testing {

// One sample line.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> counter/gauge/...
  std::map<std::string, std::string> help;   // family -> unescaped help
  std::vector<Sample> samples;

  // The value of the sample with this name and exactly these labels, or
  // NOT_FOUND.
  absl::StatusOr<double> Value(const std::string& name,
                               const std::map<std::string, std::string>& labels = {}) const;
  // The family (TYPE name) a sample name belongs to: x for x_bucket, x_sum,
  // x_count of a histogram or summary x; otherwise the name itself.
  std::string FamilyOf(const std::string& sample_name) const;
};

// INVALID_ARGUMENT naming the line number and the rule broken, or the parsed
// exposition.
absl::StatusOr<Exposition> CheckExpositionFormat(const std::string& text);

}  // namespace rpci::testing

#endif  // RPCI_COMMON_TESTING_EXPOSITION_FORMAT_H_
