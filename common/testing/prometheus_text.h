#ifndef RPCI_COMMON_TESTING_PROMETHEUS_TEXT_H_
#define RPCI_COMMON_TESTING_PROMETHEUS_TEXT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rpci::testing {

// One sample line of the Prometheus text exposition format.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> counter/gauge/histogram
  std::map<std::string, std::string> help;
  std::vector<Sample> samples;

  // The value of the sample with this name and exactly these labels, or
  // NOT_FOUND.
  absl::StatusOr<double> Value(const std::string& name,
                               const std::map<std::string, std::string>& labels = {}) const;
};

// Parses exposition text strictly (as Prometheus' text parser would): a bad
// line is INVALID_ARGUMENT naming the line number.
absl::StatusOr<Exposition> ParsePrometheusText(const std::string& text);

}  // namespace rpci::testing

#endif  // RPCI_COMMON_TESTING_PROMETHEUS_TEXT_H_
