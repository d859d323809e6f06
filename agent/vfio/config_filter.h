#ifndef RPCI_AGENT_VFIO_CONFIG_FILTER_H_
#define RPCI_AGENT_VFIO_CONFIG_FILTER_H_

// What a tenant may write in a device's PCI configuration space. The agent
// owns the BARs, the interrupt capabilities, power management and reset; a
// tenant write that touches them is refused, and the Command register keeps
// Memory Space and Bus Master enabled whatever the tenant writes (a tenant
// cannot move BARs or turn off bus mastering behind the agent).

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace rpci::agent::vfio {

inline constexpr uint16_t kPciCommand = 0x04;
inline constexpr uint16_t kCommandMemory = 0x0002;
inline constexpr uint16_t kCommandBusMaster = 0x0004;
inline constexpr uint8_t kCapPm = 0x01;
inline constexpr uint8_t kCapMsi = 0x05;
inline constexpr uint8_t kCapVendor = 0x09;
inline constexpr uint8_t kCapExpress = 0x10;
inline constexpr uint8_t kCapMsix = 0x11;

// A standard capability found on the config space's capability list.
struct PciCapability {
  uint8_t id = 0;
  uint16_t offset = 0;
};

// `size` bytes at `offset` in BAR `bar`.
struct BarRange {
  uint8_t bar = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
};

// Where a function's MSI-X table and pending bit array (PBA) lie.
struct MsixLayout {
  uint16_t vectors = 0;
  BarRange table;
  BarRange pba;
};

// The standard capabilities of `config` (at least the first 256 bytes of a
// config space), following the list from 0x34; loops and out-of-range
// pointers end the walk.
std::vector<PciCapability> ReadCapabilities(const std::vector<uint8_t>& config);

// The MSI-X layout when the function has MSI-X.
bool ReadMsix(const std::vector<uint8_t>& config, MsixLayout* out);

// Decides a tenant write of `width` (1, 2 or 4) bytes at `offset`: the value
// to write (the Command register with Memory and Bus Master forced on), or
// PERMISSION_DENIED naming the register, INVALID_ARGUMENT for a bad width or
// alignment. Allowed: Command, Status, cache line size, latency timer, the
// body of vendor-specific capabilities, PCIe Device Control without "initiate
// FLR". Everything else (BARs, ROM, interrupt line/pin, MSI, MSI-X, power
// management, extended config space, ...) is refused.
absl::StatusOr<uint32_t> FilterTenantConfigWrite(const std::vector<uint8_t>& config, uint16_t offset, uint8_t width,
                                                 uint32_t value);

}  // namespace rpci::agent::vfio

#endif  // RPCI_AGENT_VFIO_CONFIG_FILTER_H_
