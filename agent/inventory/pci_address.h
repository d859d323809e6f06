#ifndef RPCI_AGENT_INVENTORY_PCI_ADDRESS_H_
#define RPCI_AGENT_INVENTORY_PCI_ADDRESS_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <tuple>

#include "absl/status/statusor.h"

namespace rpci::agent {

// A PCI function address, domain:bus:device.function ("0000:3b:00.0").
struct PciAddress {
  uint32_t domain = 0;   // 16 bits in practice; sysfs allows up to 32
  uint32_t bus = 0;      // 0..255
  uint32_t device = 0;   // 0..31
  uint32_t function = 0; // 0..7

  // Accepts "DDDD:BB:DD.F" (sysfs form) and "BB:DD.F" (domain 0), hex,
  // either case. INVALID_ARGUMENT naming the text and the bad part otherwise.
  static absl::StatusOr<PciAddress> Parse(absl::string_view text);

  // Canonical lower-case "dddd:bb:dd.f".
  std::string ToString() const;
  // ToString() with ':' and '.' replaced by '-': "0000-3b-00-0".
  std::string ToDashed() const;

  friend bool operator==(const PciAddress& a, const PciAddress& b) {
    return std::tie(a.domain, a.bus, a.device, a.function) ==
           std::tie(b.domain, b.bus, b.device, b.function);
  }
  friend bool operator!=(const PciAddress& a, const PciAddress& b) { return !(a == b); }
  friend bool operator<(const PciAddress& a, const PciAddress& b) {
    return std::tie(a.domain, a.bus, a.device, a.function) <
           std::tie(b.domain, b.bus, b.device, b.function);
  }
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_INVENTORY_PCI_ADDRESS_H_
