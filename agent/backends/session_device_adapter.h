#ifndef RPCI_AGENT_BACKENDS_SESSION_DEVICE_ADAPTER_H_
#define RPCI_AGENT_BACKENDS_SESSION_DEVICE_ADAPTER_H_

#include <memory>

#include "agent/backends/device_backend.h"
#include "agent/session/session_device.h"

namespace rpci::agent {

// Presents a DeviceBackend as the SessionDevice the session server drives.
// Register writes go through the backend (with their side effects); BAR reads
// are 32-bit loads, so `offset` and `len` must be multiples of 4. A backend
// without DMA space reports a null dma_space() of size 0.
class SessionDeviceAdapter : public SessionDevice {
 public:
  explicit SessionDeviceAdapter(std::unique_ptr<DeviceBackend> backend) : backend_(std::move(backend)) {}

  std::vector<Bar> Bars() const override;
  absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) override;
  absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) override;
  uint8_t* dma_space() override { return backend_->dma() ? backend_->dma()->data() : nullptr; }
  uint64_t dma_size() const override { return backend_->dma() ? backend_->dma()->size() : 0; }
  std::vector<Interrupt> TakeInterrupts() override;

  DeviceBackend& backend() { return *backend_; }

 private:
  std::unique_ptr<DeviceBackend> backend_;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_BACKENDS_SESSION_DEVICE_ADAPTER_H_
