#ifndef RPCI_AGENT_BACKENDS_EMU_BACKEND_H_
#define RPCI_AGENT_BACKENDS_EMU_BACKEND_H_

#include <memory>

#include "agent/backends/device_backend.h"
#include "agent/emu/emu_device.h"

namespace rpci::agent {

// The `emu` backend: an rpci-emu device (docs/rpci-emu.md) with BAR0 and a
// DMA space of `dma_size` bytes.
class EmuBackend : public DeviceBackend {
 public:
  // INVALID_ARGUMENT for a DMA size of 0 or above 1 GiB.
  static absl::StatusOr<std::unique_ptr<EmuBackend>> Create(uint64_t dma_size);

  std::string kind() const override { return "emu"; }
  std::vector<BarWindow> Bars() const override;
  absl::StatusOr<uint32_t> Read32(uint16_t bar, uint64_t offset) override;
  absl::Status Write32(uint16_t bar, uint64_t offset, uint32_t value) override;
  absl::Status Write64(uint16_t bar, uint64_t offset, uint64_t value) override;
  DmaSpace* dma() override { return &device_->dma(); }
  std::vector<DeviceInterrupt> Poll() override;

  emu::EmuDevice& device() { return *device_; }

 private:
  explicit EmuBackend(uint64_t dma_size) : device_(std::make_unique<emu::EmuDevice>(dma_size)) {}
  std::unique_ptr<emu::EmuDevice> device_;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_BACKENDS_EMU_BACKEND_H_
