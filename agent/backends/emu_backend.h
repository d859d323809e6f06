#ifndef RPCI_AGENT_BACKENDS_EMU_BACKEND_H_
#define RPCI_AGENT_BACKENDS_EMU_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "agent/emu/emu_device.h"
#include "agent/session/session_device.h"

namespace rpci::agent {

// The `emu` backend: an rpci-emu device (docs/rpci-emu.md) with BAR0 and a
// DMA space of `dma_size` bytes. A 64-bit register write reaches the device
// as low-then-high 32-bit writes, as a root port splitting it would deliver
// them.
class EmuBackend final : public SessionDevice {
 public:
  // INVALID_ARGUMENT for a DMA size of 0 or above 1 GiB.
  static absl::StatusOr<std::unique_ptr<EmuBackend>> Create(uint64_t dma_size);

  std::string kind() const override { return "emu"; }
  std::vector<Bar> Bars() const override;
  absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) override;
  absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) override;
  uint8_t* dma_space() override { return device_->dma().data(); }
  uint64_t dma_size() const override { return device_->dma().size(); }
  std::vector<Interrupt> TakeInterrupts() override { return device_->TakeInterrupts(); }
  // Control-register reset plus a zeroed DMA space (EmuDevice::Reset).
  absl::Status Reset() override;

  emu::EmuDevice& device() { return *device_; }

 private:
  explicit EmuBackend(uint64_t dma_size) : device_(std::make_unique<emu::EmuDevice>(dma_size)) {}
  std::unique_ptr<emu::EmuDevice> device_;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_BACKENDS_EMU_BACKEND_H_
