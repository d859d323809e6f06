#include "agent/vfio/config_filter.h"

#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace rpci::agent::vfio {
namespace {

constexpr uint16_t kCapabilitiesPointer = 0x34;
constexpr uint16_t kStatus = 0x06;
constexpr uint16_t kStatusCapList = 0x10;
constexpr uint16_t kPcieDeviceControl = 0x08;  // in the PCIe capability
constexpr uint16_t kDevCtlInitiateFlr = 0x8000;

uint16_t Load16(const std::vector<uint8_t>& c, size_t off) {
  return off + 2 <= c.size() ? static_cast<uint16_t>(c[off] | (c[off + 1] << 8)) : 0;
}
uint32_t Load32(const std::vector<uint8_t>& c, size_t off) {
  return off + 4 <= c.size() ? static_cast<uint32_t>(Load16(c, off) | (static_cast<uint32_t>(Load16(c, off + 2)) << 16))
                             : 0;
}

// Whether the tenant may write config byte `off`.
bool ByteAllowed(const std::vector<uint8_t>& config, const std::vector<PciCapability>& caps, uint16_t off) {
  if (off >= kPciCommand && off < kPciCommand + 4) return true;  // Command, Status
  if (off == 0x0c || off == 0x0d) return true;                   // cache line size, latency timer
  for (const PciCapability& cap : caps) {
    if (cap.id == kCapVendor) {
      uint8_t len = size_t{cap.offset} + 2 < config.size() ? config[cap.offset + 2] : 0;
      if (off >= cap.offset + 3 && off < cap.offset + len) return true;
    }
    if (cap.id == kCapExpress && off >= cap.offset + kPcieDeviceControl && off < cap.offset + kPcieDeviceControl + 2) {
      return true;
    }
  }
  return false;
}

std::string RegisterName(const std::vector<PciCapability>& caps, uint16_t off) {
  if (off >= 0x10 && off < 0x28) return absl::StrFormat("BAR%d", (off - 0x10) / 4);
  if (off >= 0x30 && off < 0x34) return "expansion ROM base";
  if (off >= 0x100) return "extended configuration space";
  std::string name = absl::StrFormat("config offset 0x%x", off);
  for (const PciCapability& cap : caps) {
    if (off < cap.offset) continue;
    const char* cap_name = cap.id == kCapMsi     ? "MSI"
                           : cap.id == kCapMsix  ? "MSI-X"
                           : cap.id == kCapPm    ? "power management"
                           : cap.id == kCapExpress ? "PCI Express"
                                                   : nullptr;
    if (cap_name != nullptr) name = absl::StrFormat("%s capability (offset 0x%x)", cap_name, off);
  }
  return name;
}

}  // namespace

std::vector<PciCapability> ReadCapabilities(const std::vector<uint8_t>& config) {
  std::vector<PciCapability> caps;
  if (config.size() < 0x40 || (Load16(config, kStatus) & kStatusCapList) == 0) return caps;
  std::set<uint16_t> seen;
  uint16_t ptr = config[kCapabilitiesPointer] & 0xfc;
  while (ptr >= 0x40 && size_t{ptr} + 2 <= config.size() && seen.insert(ptr).second) {
    caps.push_back({config[ptr], ptr});
    ptr = config[ptr + 1] & 0xfc;
  }
  return caps;
}

bool ReadMsix(const std::vector<uint8_t>& config, MsixLayout* out) {
  for (const PciCapability& cap : ReadCapabilities(config)) {
    if (cap.id != kCapMsix) continue;
    uint16_t control = Load16(config, cap.offset + 2);
    uint32_t table = Load32(config, cap.offset + 4);
    uint32_t pba = Load32(config, cap.offset + 8);
    out->vectors = static_cast<uint16_t>((control & 0x7ff) + 1);
    out->table = {static_cast<uint8_t>(table & 7), table & ~7u, uint64_t{out->vectors} * 16};
    out->pba = {static_cast<uint8_t>(pba & 7), pba & ~7u, ((uint64_t{out->vectors} + 63) / 64) * 8};
    return true;
  }
  return false;
}

absl::StatusOr<uint32_t> FilterTenantConfigWrite(const std::vector<uint8_t>& config, uint16_t offset, uint8_t width,
                                                 uint32_t value) {
  if ((width != 1 && width != 2 && width != 4) || offset % width != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("config write of %d bytes at 0x%x: bad width or alignment", width, offset));
  }
  std::vector<PciCapability> caps = ReadCapabilities(config);
  for (uint16_t off = offset; off < offset + width; ++off) {
    if (!ByteAllowed(config, caps, off)) {
      return absl::PermissionDeniedError(
          absl::StrFormat("config write at 0x%x: %s belongs to the agent", offset, RegisterName(caps, off)));
    }
  }
  // The Command register's low byte holds Memory Space and Bus Master.
  if (offset <= kPciCommand && offset + width > kPciCommand) {
    value |= static_cast<uint32_t>(kCommandMemory | kCommandBusMaster) << (8 * (kPciCommand - offset));
  }
  for (const PciCapability& cap : caps) {
    uint16_t devctl = cap.offset + kPcieDeviceControl;
    if (cap.id == kCapExpress && offset <= devctl + 1 && offset + width > devctl + 1) {
      value &= ~(static_cast<uint32_t>(kDevCtlInitiateFlr >> 8) << (8 * (devctl + 1 - offset)));
    }
  }
  return value;
}

}  // namespace rpci::agent::vfio
