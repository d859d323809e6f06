#ifndef RPCI_AGENT_APP_BACKEND_SESSION_DEVICE_H_
#define RPCI_AGENT_APP_BACKEND_SESSION_DEVICE_H_

#include <memory>

#include "agent/app/agent_app.h"
#include "agent/backends/device_backend.h"
#include "agent/emu/memory_space.h"
#include "agent/session/session_device.h"

namespace rpci::agent {

// A device backend (emu, sysfs-bar) as the session server sees it. A backend
// without a DMA space (sysfs-bar) gets a 4 KiB local one the device never
// touches, because every session has a DMA region.
class BackendSessionDevice final : public SessionDevice {
 public:
  explicit BackendSessionDevice(std::unique_ptr<DeviceBackend> backend);

  std::vector<Bar> Bars() const override;
  // 4-byte writes go to Write32, 8-byte ones to Write64; the backend's
  // bounds and alignment errors come back as they are.
  absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) override;
  // 32-bit reads; INVALID_ARGUMENT unless offset and len are multiples of 4.
  absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) override;
  uint8_t* dma_space() override { return dma_->data(); }
  uint64_t dma_size() const override { return dma_->size(); }
  std::vector<Interrupt> TakeInterrupts() override;

  DeviceBackend& backend() { return *backend_; }

 private:
  std::unique_ptr<DeviceBackend> backend_;
  std::unique_ptr<DmaSpace> own_dma_;  // only for backends without one
  DmaSpace* dma_;
};

// The real backends for AgentApp: rpci-emu devices and, when the operator
// opted in (AgentOptions::sysfs_bar), sysfs-bar on real functions.
DeviceBackends RealDeviceBackends(bool allow_sysfs_bar);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_APP_BACKEND_SESSION_DEVICE_H_
