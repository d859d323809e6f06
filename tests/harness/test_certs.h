#ifndef RPCI_TESTS_HARNESS_TEST_CERTS_H_
#define RPCI_TESTS_HARNESS_TEST_CERTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rpci::testing {

// mTLS material for tests that run the daemons, as tools/certs makes it for
// local mode: one CA (dir/ca.crt) and one certificate per common name
// ("controller", "agent:<node>", "plugin:<node>"), each naming localhost and
// the given IPs.
struct TestCerts {
  std::string dir;

  // --tls-cert, --tls-key and --tls-ca of `common_name`'s certificate.
  std::vector<std::string> Flags(const std::string& common_name) const;
  // The agent config's `tls: {cert, key, ca}` line for `common_name`.
  std::string AgentConfig(const std::string& common_name) const;
};

absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir, const std::vector<std::string>& common_names,
                                        const std::vector<std::string>& ip_addresses);

}  // namespace rpci::testing

#endif  // RPCI_TESTS_HARNESS_TEST_CERTS_H_
