#ifndef RPCI_AGENT_BACKENDS_SESSION_DEVICE_ADAPTER_H_
#define RPCI_AGENT_BACKENDS_SESSION_DEVICE_ADAPTER_H_

#include <memory>

#include "agent/backends/device_backend.h"
#include "agent/emu/memory_space.h"
#include "agent/session/session_device.h"

namespace rpci::agent {

// Presents a DeviceBackend as the SessionDevice the session server drives.
// Register writes go through the backend (with their side effects); BAR reads
// are 32-bit loads, so `offset` and `len` must be multiples of 4. A backend
// without a DMA space (sysfs-bar) gets a local one of kLocalDmaSize bytes that
// the device never touches, because every session has a DMA region.
class SessionDeviceAdapter final : public SessionDevice {
 public:
  static constexpr uint64_t kLocalDmaSize = 4096;

  explicit SessionDeviceAdapter(std::unique_ptr<DeviceBackend> backend);

  std::vector<Bar> Bars() const override;
  absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) override;
  absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) override;
  uint8_t* dma_space() override { return dma_->data(); }
  uint64_t dma_size() const override { return dma_->size(); }
  std::vector<Interrupt> TakeInterrupts() override;

  DeviceBackend& backend() { return *backend_; }

 private:
  std::unique_ptr<DeviceBackend> backend_;
  std::unique_ptr<DmaSpace> local_dma_;  // only for backends without one
  DmaSpace* dma_;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_BACKENDS_SESSION_DEVICE_ADAPTER_H_
