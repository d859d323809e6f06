#ifndef RPCI_TESTS_VM_SOFT_ROCE_H_
#define RPCI_TESTS_VM_SOFT_ROCE_H_

// Soft-RoCE (rdma_rxe) in the test machine: one rxe device on each end of a
// VethPair, so the two "hosts" talk RDMA verbs over the veth link.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/harness/netns.h"

namespace rpci::testing {

// Runs `argv` (no shell) and returns its stdout; INTERNAL with stderr when
// it fails.
absl::StatusOr<std::string> CommandOutput(const std::vector<std::string>& argv);

class SoftRoce {
 public:
  // Loads rdma_rxe and adds rxe devices named rxe<tag>a / rxe<tag>b (plus a
  // pid suffix) on the veth ends of `pair`, from inside each namespace, then
  // waits until both ports are ACTIVE with the veth addresses as GIDs.
  static absl::StatusOr<SoftRoce> Create(const VethPair& pair, const std::string& tag);
  ~SoftRoce();
  SoftRoce(SoftRoce&& other) noexcept;
  SoftRoce& operator=(SoftRoce&&) = delete;

  // The rxe device on host a (0) or b (1).
  const std::string& nic(int host) const { return nic_[host]; }

 private:
  SoftRoce() = default;
  std::string nic_[2];
  bool owned_ = false;
};

}  // namespace rpci::testing

#endif  // RPCI_TESTS_VM_SOFT_ROCE_H_
