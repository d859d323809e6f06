#ifndef RPCI_TESTS_HARNESS_JOB_SUMMARY_H_
#define RPCI_TESTS_HARNESS_JOB_SUMMARY_H_

#include <string>

#include "nlohmann/json.hpp"

namespace rpci::testing {

// The JSON summary line (an object with "ok") that the example jobs
// (examples/emu_jobs, the edu and nvme drivers) print, from a process's or
// container's stdout; null when there is none.
nlohmann::json JobSummary(const std::string& out);

}  // namespace rpci::testing

#endif  // RPCI_TESTS_HARNESS_JOB_SUMMARY_H_
