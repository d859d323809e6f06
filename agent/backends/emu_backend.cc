#include "agent/backends/emu_backend.h"

#include "absl/strings/str_format.h"

namespace rpci::agent {

absl::StatusOr<std::unique_ptr<EmuBackend>> EmuBackend::Create(uint64_t dma_size) {
  if (dma_size == 0 || dma_size > (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrFormat("emu: DMA size %d not in 1..1 GiB", dma_size));
  }
  return std::unique_ptr<EmuBackend>(new EmuBackend(dma_size));
}

std::vector<BarWindow> EmuBackend::Bars() const {
  // BAR0 is the register file; its bytes are what a session mirrors.
  const BarSpace& bar0 = device_->bar0();
  return {{0, bar0.size(), const_cast<uint8_t*>(bar0.data()), true}};
}

absl::StatusOr<uint32_t> EmuBackend::Read32(uint16_t bar, uint64_t offset) {
  if (absl::StatusOr<BarWindow> w = CheckBarAccess(Bars(), bar, offset, 4); !w.ok()) return w.status();
  return device_->Read32(offset);
}

absl::Status EmuBackend::Write32(uint16_t bar, uint64_t offset, uint32_t value) {
  if (absl::StatusOr<BarWindow> w = CheckBarAccess(Bars(), bar, offset, 4); !w.ok()) return w.status();
  return device_->Write32(offset, value);
}

absl::Status EmuBackend::Write64(uint16_t bar, uint64_t offset, uint64_t value) {
  if (absl::StatusOr<BarWindow> w = CheckBarAccess(Bars(), bar, offset, 8); !w.ok()) return w.status();
  // The device has 32-bit registers: low dword first, as a PCIe root port
  // splitting a 64-bit write would deliver them.
  if (absl::Status s = device_->Write32(offset, static_cast<uint32_t>(value)); !s.ok()) return s;
  return device_->Write32(offset + 4, static_cast<uint32_t>(value >> 32));
}

std::vector<DeviceInterrupt> EmuBackend::Poll() {
  std::vector<DeviceInterrupt> out;
  for (const emu::Interrupt& irq : device_->TakeInterrupts()) out.push_back({irq.vector, irq.cause, irq.data});
  return out;
}

}  // namespace rpci::agent
