#ifndef RPCI_AGENT_BACKENDS_SYSFS_BAR_BACKEND_H_
#define RPCI_AGENT_BACKENDS_SYSFS_BAR_BACKEND_H_

#include <memory>
#include <string>

#include "agent/backends/device_backend.h"

namespace rpci::agent {

struct SysfsBarOptions {
  // Root of sysfs; the device is <sysfs_root>/bus/pci/devices/<bdf>.
  std::string sysfs_root = "/sys";
  // The function, "dddd:bb:dd.f" (lower-case hex).
  std::string bdf;
  // The operator's opt-in (config `backends.sysfs_bar.allow`): mapping a real
  // device's registers into remote hands is never a default.
  bool allow = false;
};

// The `sysfs-bar` backend: a real function's memory BARs, mmap'ed from
// resourceN. Only for devices with no bound host driver. No DMA space, no
// interrupts (those need VFIO, which this backend does not use).
class SysfsBarBackend : public DeviceBackend {
 public:
  // FAILED_PRECONDITION when not allowed, when a host driver is bound (the
  // `driver` link exists), or when the device has no mappable memory BAR;
  // INVALID_ARGUMENT for a malformed BDF; NOT_FOUND when the device is absent;
  // the errno text when a resource file cannot be opened or mapped.
  static absl::StatusOr<std::unique_ptr<SysfsBarBackend>> Open(const SysfsBarOptions& options);
  ~SysfsBarBackend() override;

  std::string kind() const override { return "sysfs-bar"; }
  std::vector<BarWindow> Bars() const override { return bars_; }
  // Accesses are single volatile loads/stores of the given width.
  absl::StatusOr<uint32_t> Read32(uint16_t bar, uint64_t offset) override;
  absl::Status Write32(uint16_t bar, uint64_t offset, uint32_t value) override;
  absl::Status Write64(uint16_t bar, uint64_t offset, uint64_t value) override;
  DmaSpace* dma() override { return nullptr; }
  std::vector<DeviceInterrupt> Poll() override { return {}; }

 private:
  SysfsBarBackend() = default;
  std::vector<BarWindow> bars_;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_BACKENDS_SYSFS_BAR_BACKEND_H_
