#ifndef RPCI_AGENT_BACKENDS_SYSFS_BAR_BACKEND_H_
#define RPCI_AGENT_BACKENDS_SYSFS_BAR_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/session/session_device.h"

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
// resourceN. Only for devices with no bound host driver. No interrupts and no
// device DMA (those need VFIO, which this backend does not use): its DMA space
// is a local kLocalDmaSize buffer the device never touches, because every
// session has a DMA region. Accesses are single volatile loads/stores of the
// given width.
class SysfsBarBackend final : public SessionDevice {
 public:
  // FAILED_PRECONDITION when not allowed, when a host driver is bound (the
  // `driver` link exists), or when the device has no mappable memory BAR;
  // INVALID_ARGUMENT for a malformed BDF; NOT_FOUND when the device is absent;
  // the errno text when a resource file cannot be opened or mapped.
  static absl::StatusOr<std::unique_ptr<SysfsBarBackend>> Open(const SysfsBarOptions& options);
  ~SysfsBarBackend() override;

  static constexpr uint64_t kLocalDmaSize = 4096;

  std::string kind() const override { return "sysfs-bar"; }
  std::vector<Bar> Bars() const override { return bars_; }
  absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) override;
  absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) override;
  uint8_t* dma_space() override { return local_dma_.data(); }
  uint64_t dma_size() const override { return local_dma_.size(); }
  std::vector<Interrupt> TakeInterrupts() override { return {}; }
  // Function reset through the kernel (writes 1 to <device>/reset) and a
  // zeroed local DMA buffer. FAILED_PRECONDITION when the kernel offers no
  // reset method for the function (no `reset` file): then it is not clean.
  absl::Status Reset() override;

 private:
  SysfsBarBackend() : local_dma_(kLocalDmaSize, 0) {}
  std::string dir_;
  std::vector<Bar> bars_;
  std::vector<uint8_t*> maps_;  // maps_[i] is bars_[i] mapped
  std::vector<uint8_t> local_dma_;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_BACKENDS_SYSFS_BAR_BACKEND_H_
