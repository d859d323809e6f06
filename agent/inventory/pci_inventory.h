#ifndef RPCI_AGENT_INVENTORY_PCI_INVENTORY_H_
#define RPCI_AGENT_INVENTORY_PCI_INVENTORY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/inventory/pci_names.h"
#include "proto/rpci/v1/device.pb.h"

namespace rpci::agent {

// Reads every PCIe function under `<sysfs_root>/bus/pci/devices`, sorted by
// address. A missing, unreadable or malformed attribute of one function is
// recorded in that function's `problems` (field name + cause) and the field
// keeps its "unknown" value; the function is always reported. Entries whose
// names are not PCI addresses are ignored. `names` may be null (names left
// empty). NOT_FOUND when the devices directory itself is absent.
absl::StatusOr<std::vector<rpci::v1::PcieFunction>> ScanPciFunctions(const std::string& sysfs_root,
                                                                      PciNames* names);

// Reads one function's directory (`<sysfs_root>/bus/pci/devices/<bdf>`).
rpci::v1::PcieFunction ReadPciFunction(const std::string& sysfs_root, const std::string& bdf,
                                       PciNames* names);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_INVENTORY_PCI_INVENTORY_H_
