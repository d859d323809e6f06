#include "agent/backends/emu_backend.h"

#include "absl/strings/str_format.h"
#include "agent/backends/bar_access.h"

namespace rpci::agent {

absl::StatusOr<std::unique_ptr<EmuBackend>> EmuBackend::Create(uint64_t dma_size) {
  if (dma_size == 0 || dma_size > (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrFormat("emu: DMA size %d not in 1..1 GiB", dma_size));
  }
  return std::unique_ptr<EmuBackend>(new EmuBackend(dma_size));
}

std::vector<SessionDevice::Bar> EmuBackend::Bars() const { return {{0, emu::kBar0Size, true}}; }

absl::Status EmuBackend::WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  if (auto b = CheckRegisterWrite(Bars(), bar, offset, width, value); !b.ok()) return b.status();
  if (absl::Status s = device_->Write32(offset, static_cast<uint32_t>(value)); !s.ok() || width == 4) return s;
  return device_->Write32(offset + 4, static_cast<uint32_t>(value >> 32));
}

absl::Status EmuBackend::ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) {
  if (auto b = CheckBarRead(Bars(), bar, offset, len); !b.ok()) return b.status();
  return device_->ReadBar0(offset, len, out);
}

absl::Status EmuBackend::Reset() {
  device_->Reset();
  return absl::OkStatus();
}

}  // namespace rpci::agent
