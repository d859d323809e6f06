#include "agent/inventory/locality.h"

#include <algorithm>
#include <set>

#include "agent/inventory/pci_address.h"

namespace rpci::agent {
namespace {

using rpci::v1::PcieFunction;
using rpci::v1::RdmaNic;

// Functions of one physical device (same domain:bus:device) share its link.
bool SameSlot(const std::string& a, const std::string& b) {
  absl::StatusOr<PciAddress> pa = PciAddress::Parse(a);
  absl::StatusOr<PciAddress> pb = PciAddress::Parse(b);
  return pa.ok() && pb.ok() && pa->domain == pb->domain && pa->bus == pb->bus &&
         pa->device == pb->device;
}

bool SharesSwitch(const PcieFunction& device, const PcieFunction& nic_fn) {
  if (SameSlot(device.bdf(), nic_fn.bdf())) return true;
  std::set<std::string> above(device.parent_bridges().begin(), device.parent_bridges().end());
  for (const std::string& bridge : nic_fn.parent_bridges()) {
    if (above.count(bridge) > 0) return true;
  }
  return false;
}

}  // namespace

NicLocality FindLocalNics(const PcieFunction& device, const std::vector<RdmaNic>& nics,
                          const std::vector<PcieFunction>& functions) {
  NicLocality out;
  std::vector<std::string> numa, unplaced;
  for (const RdmaNic& nic : nics) {
    bool here = false;  // a port on a netdev of this network namespace
    for (const auto& port : nic.ports()) here = here || !port.netdev().empty();
    if (nic.bdf().empty() && here) unplaced.push_back(nic.name());
    const PcieFunction* nic_fn = nullptr;
    for (const PcieFunction& fn : functions) {
      if (!nic.bdf().empty() && fn.bdf() == nic.bdf()) nic_fn = &fn;
    }
    if (nic_fn != nullptr && SharesSwitch(device, *nic_fn)) {
      out.nics.push_back(nic.name());
    } else if (device.numa_node() >= 0 && nic.numa_node() == device.numa_node()) {
      numa.push_back(nic.name());
    }
  }
  if (!out.nics.empty()) {
    out.kind = LocalityKind::kSwitch;
  } else if (!numa.empty()) {
    out.kind = LocalityKind::kNuma;
    out.nics = std::move(numa);
  } else if (!unplaced.empty()) {
    out.kind = LocalityKind::kUnplaced;
    out.nics = std::move(unplaced);
  }
  std::sort(out.nics.begin(), out.nics.end());
  return out;
}

const char* LocalityKindName(LocalityKind kind) {
  switch (kind) {
    case LocalityKind::kSwitch:
      return "switch";
    case LocalityKind::kNuma:
      return "numa";
    case LocalityKind::kUnplaced:
      return "unplaced";
    case LocalityKind::kNone:
      break;
  }
  return "none";
}

}  // namespace rpci::agent
