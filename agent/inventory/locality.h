#ifndef RPCI_AGENT_INVENTORY_LOCALITY_H_
#define RPCI_AGENT_INVENTORY_LOCALITY_H_

#include <string>
#include <vector>

#include "proto/rpci/v1/device.pb.h"

namespace rpci::agent {

// How close the NICs chosen for a device are to it.
enum class LocalityKind {
  kNone,    // no NIC shares its switch or NUMA node
  kSwitch,  // NICs below a PCIe bridge the device is also below (or the same slot)
  kNuma,    // NICs on the device's NUMA node
  kUnplaced,  // none is placed nearer, and these have no PCI location at all
              // (software RDMA such as rxe on a veth): equally near every device
};

struct NicLocality {
  LocalityKind kind = LocalityKind::kNone;
  std::vector<std::string> nics;  // NIC names, sorted
};

// The NICs that share `device`'s PCIe switch, else its NUMA node. A NIC's
// bridge chain is looked up by its bdf in `functions` (the PCI inventory);
// a NIC missing from it can still match by NUMA node. Unknown NUMA nodes (-1)
// never match. When nothing matches, NICs without any PCI location (empty
// bdf) that have a port on a netdev of this network namespace are returned as
// kUnplaced: nothing is nearer, so they serve the device.
NicLocality FindLocalNics(const rpci::v1::PcieFunction& device,
                          const std::vector<rpci::v1::RdmaNic>& nics,
                          const std::vector<rpci::v1::PcieFunction>& functions);

const char* LocalityKindName(LocalityKind kind);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_INVENTORY_LOCALITY_H_
