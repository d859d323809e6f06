#ifndef RPCI_AGENT_INVENTORY_RDMA_INVENTORY_H_
#define RPCI_AGENT_INVENTORY_RDMA_INVENTORY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/log.h"
#include "proto/rpci/v1/device.pb.h"

namespace rpci::agent {

// Where RDMA device names, GUIDs, port states and GIDs come from.
enum class RdmaSource {
  kVerbs,  // rdma-core's ibv_get_device_list / ibv_query_port (live system only)
  kSysfs,  // <sysfs_root>/class/infiniband/* (any root, e.g. a test tree)
};

// Picks kVerbs for the live "/sys" and kSysfs for any other root.
RdmaSource DefaultRdmaSource(const std::string& sysfs_root);

// Inventories the host's RDMA NICs. Each NIC's PCI address and NUMA node come
// from the `device` link of <sysfs_root>/class/infiniband/<name> (for a
// software device such as rxe: from its netdev's `device` link) whichever the
// source, so locality works the same on a synthetic tree; ports' netdevs and
// the uverbs character device come from sysfs too. Keep one instance
// for the agent's lifetime: "no RDMA devices" is logged once, not per scan.
class RdmaInventory {
 public:
  RdmaInventory(std::string sysfs_root, RdmaSource source, Logger logger = Logger("agent"));

  // NICs sorted by name; ports in port order with their non-zero GIDs. An
  // empty list when there are none. UNAVAILABLE when rdma-core fails for a
  // reason other than having no devices.
  absl::StatusOr<std::vector<rpci::v1::RdmaNic>> Scan();

 private:
  absl::StatusOr<std::vector<rpci::v1::RdmaNic>> ScanVerbs();
  absl::StatusOr<std::vector<rpci::v1::RdmaNic>> ScanSysfs();
  // Each port's netdev (gid_attrs/ndevs, else the device's `parent`).
  void FillNetdevs(rpci::v1::RdmaNic* nic);
  // class/infiniband_verbs/uverbsN whose ibdev is the NIC.
  void FillUverbsDevice(rpci::v1::RdmaNic* nic);
  // bdf and NUMA node from the device's PCI function, or its netdev's.
  void FillPciLocation(rpci::v1::RdmaNic* nic);

  std::string sysfs_root_;
  RdmaSource source_;
  Logger logger_;
  bool said_none_ = false;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_INVENTORY_RDMA_INVENTORY_H_
