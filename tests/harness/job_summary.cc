#include "tests/harness/job_summary.h"

#include <vector>

#include "absl/strings/str_split.h"

namespace rpci::testing {

nlohmann::json JobSummary(const std::string& out) {
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(out, '\n'))) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("ok")) return j;
  }
  return nlohmann::json();
}

}  // namespace rpci::testing
