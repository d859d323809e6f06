#ifndef RPCI_AGENT_BACKENDS_DEVICE_BACKEND_H_
#define RPCI_AGENT_BACKENDS_DEVICE_BACKEND_H_

// How the agent reaches one device: its BAR windows with bounds-checked
// register access, the DMA space the device works on, and the interrupts it
// raised. Implementations: `emu` (rpci-emu, emu_backend.h) and `sysfs-bar`
// (a real function's resourceN, sysfs_bar_backend.h).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/emu/memory_space.h"

namespace rpci::agent {

// One mapped BAR. `data` stays valid for the backend's lifetime.
struct BarWindow {
  uint16_t index = 0;
  uint64_t size = 0;
  uint8_t* data = nullptr;
  bool writable = true;
};

// An emulated MSI-X message: vector, the cause bit, message data.
struct DeviceInterrupt {
  uint16_t vector = 0;
  uint32_t cause = 0;
  uint64_t data = 0;
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;

  // "emu" or "sysfs-bar".
  virtual std::string kind() const = 0;
  virtual std::vector<BarWindow> Bars() const = 0;

  // Register access. NOT_FOUND for a BAR the device doesn't have,
  // INVALID_ARGUMENT when `offset` is not aligned to the width, OUT_OF_RANGE
  // when the access leaves the BAR. A 64-bit write is one 8-byte store on a
  // real BAR and low-then-high 32-bit writes on the emulated one. Writes have
  // the device's side effects (a doorbell runs the work). Thread-safe.
  virtual absl::StatusOr<uint32_t> Read32(uint16_t bar, uint64_t offset) = 0;
  virtual absl::Status Write32(uint16_t bar, uint64_t offset, uint32_t value) = 0;
  virtual absl::Status Write64(uint16_t bar, uint64_t offset, uint64_t value) = 0;

  // The DMA space (device addresses are offsets into it); null when the
  // backend has none — a real device DMAs through the IOMMU, which the
  // sysfs-bar backend does not program.
  virtual DmaSpace* dma() = 0;

  // Interrupts raised since the last call, in order. Thread-safe.
  virtual std::vector<DeviceInterrupt> Poll() = 0;
};

// Checks a `width`-byte access at `offset` of BAR `bar` against `bars`;
// returns the window on success.
absl::StatusOr<BarWindow> CheckBarAccess(const std::vector<BarWindow>& bars, uint16_t bar, uint64_t offset,
                                         uint8_t width);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_BACKENDS_DEVICE_BACKEND_H_
