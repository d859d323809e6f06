#ifndef RPCI_TESTS_VM_SOFT_ROCE_H_
#define RPCI_TESTS_VM_SOFT_ROCE_H_

// Soft-RoCE (rdma_rxe) in the test machine: one rxe device on each end of a
// VethPair, so the two "hosts" talk RDMA verbs over the veth link.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/harness/netns.h"
#include "tests/harness/ownership.h"

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
  SoftRoce(SoftRoce&& other) noexcept = default;
  SoftRoce& operator=(SoftRoce&&) = delete;

  // The rxe device on host a (0) or b (1).
  const std::string& nic(int host) const { return nic_[host]; }

 private:
  SoftRoce() = default;
  std::string nic_[2];
  Ownership owned_;
};

// Two "hosts" for RDMA traffic: Linux 6.1's rxe receives only in the initial
// network namespace (its UDP 4791 socket lives there), so RDMA between two
// namespaces never arrives. Instead both ends of a veth pair stay in the
// initial namespace with a /32 address each (10.<subnet>.0.1 on host a's end,
// .2 on b's), and policy routing sends traffic between the two addresses over
// the veth link rather than through lo: rules look up `local` only for
// packets arriving on the veths, and a per-destination table routes each
// address out of the other end. An rxe device sits on each end. Processes of
// both hosts share the namespace; they bind their host's address.
class RocePair {
 public:
  static absl::StatusOr<RocePair> Create(int subnet);
  ~RocePair();
  RocePair(RocePair&& other) noexcept = default;
  RocePair& operator=(RocePair&&) = delete;

  const std::string& addr(int host) const { return addr_[host]; }
  const std::string& dev(int host) const { return dev_[host]; }
  const std::string& nic(int host) const { return nic_[host]; }
  // Cuts the wire between the hosts for `down`: every packet either end
  // sends is dropped (netem loss 100% on both veth ends), while both ends,
  // their rxe ports and routes stay up, as when a cable or switch between
  // two hosts fails. (Not `ip link set down`: see docs/verbs.md, "Link flaps
  // on Soft-RoCE".)
  absl::Status CutWire(absl::Duration down);

 private:
  RocePair() = default;
  std::string addr_[2], dev_[2], nic_[2];
  int subnet_ = 0;
  Ownership owned_;
};

}  // namespace rpci::testing

#endif  // RPCI_TESTS_VM_SOFT_ROCE_H_
