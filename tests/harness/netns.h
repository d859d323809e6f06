#ifndef RPCI_TESTS_HARNESS_NETNS_H_
#define RPCI_TESTS_HARNESS_NETNS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/harness/ownership.h"

namespace rpci::testing {

// Runs `argv` to completion (no shell); INTERNAL with its output on non-zero exit.
absl::Status RunCommand(const std::vector<std::string>& argv);

// True when this process may create network namespaces (root with
// CAP_SYS_ADMIN and a working `ip netns`). Tests that need them skip with the
// reason otherwise.
bool CanUseNetworkNamespaces(std::string* why_not);

// Two network namespaces ("hosts") joined by a veth pair, each with one
// address on 10.<subnet>.0.0/24. Names are unique per process, so tests can
// run in parallel. Deleted (with their links) on destruction.
class VethPair {
 public:
  // `tag` makes names readable in `ip netns list` (at most 6 characters).
  static absl::StatusOr<VethPair> Create(const std::string& tag);
  ~VethPair();
  VethPair(VethPair&& other) noexcept = default;
  VethPair& operator=(VethPair&&) = delete;
  VethPair(const VethPair&) = delete;

  const std::string& ns_a() const { return ns_[0]; }
  const std::string& ns_b() const { return ns_[1]; }
  const std::string& addr_a() const { return addr_[0]; }
  const std::string& addr_b() const { return addr_[1]; }
  // The veth device of host a or b (inside its namespace).
  const std::string& dev(int host) const { return dev_[host]; }

  // argv prefixed to run a program inside host a or b.
  std::vector<std::string> ExecIn(int host, const std::vector<std::string>& argv) const;

  // Cuts or restores the link (both ends down/up): a network partition.
  absl::Status SetLinkUp(bool up);

  // Drops `loss_percent` of incoming packets on both ends (iptables statistic
  // match) and delays them by `delay_ms` (tc netem; UNIMPLEMENTED when the
  // kernel has no sch_netem, after the loss is in place). Zeros remove both.
  absl::Status SetImpairment(double loss_percent, int delay_ms);

 private:
  VethPair() = default;
  std::string ns_[2];
  std::string dev_[2];
  std::string addr_[2];
  Ownership owned_;
};

}  // namespace rpci::testing

#endif  // RPCI_TESTS_HARNESS_NETNS_H_
