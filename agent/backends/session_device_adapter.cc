#include "agent/backends/session_device_adapter.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace rpci::agent {

SessionDeviceAdapter::SessionDeviceAdapter(std::unique_ptr<DeviceBackend> backend)
    : backend_(std::move(backend)), dma_(backend_->dma()) {
  if (dma_ == nullptr) {
    local_dma_ = std::make_unique<DmaSpace>(kLocalDmaSize);
    dma_ = local_dma_.get();
  }
}

std::vector<SessionDevice::Bar> SessionDeviceAdapter::Bars() const {
  std::vector<Bar> bars;
  for (const BarWindow& w : backend_->Bars()) bars.push_back({w.index, w.size, w.writable});
  return bars;
}

absl::Status SessionDeviceAdapter::WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  if (width == 4) {
    if (value > 0xFFFFFFFFu) {
      return absl::InvalidArgumentError(absl::StrFormat("BAR%d: value 0x%x does not fit 4 bytes", bar, value));
    }
    return backend_->Write32(bar, offset, static_cast<uint32_t>(value));
  }
  if (width == 8) return backend_->Write64(bar, offset, value);
  return absl::InvalidArgumentError(absl::StrFormat("BAR%d: register width %d (want 4 or 8)", bar, width));
}

absl::Status SessionDeviceAdapter::ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) {
  if (offset % 4 != 0 || len % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BAR%d: read of %d bytes at 0x%x is not in whole registers", bar, len, offset));
  }
  if (offset + len < offset) return absl::OutOfRangeError(absl::StrFormat("BAR%d: read range wraps", bar));
  if (len > 0) {
    // Check the whole range first so a failing read copies nothing.
    absl::StatusOr<BarWindow> last = CheckBarAccess(backend_->Bars(), bar, offset + len - 4, 4);
    if (!last.ok()) return last.status();
  }
  for (uint64_t at = 0; at < len; at += 4) {
    absl::StatusOr<uint32_t> word = backend_->Read32(bar, offset + at);
    if (!word.ok()) return word.status();
    std::memcpy(out + at, &*word, 4);
  }
  return absl::OkStatus();
}

std::vector<SessionDevice::Interrupt> SessionDeviceAdapter::TakeInterrupts() {
  std::vector<Interrupt> out;
  for (const DeviceInterrupt& irq : backend_->Poll()) out.push_back({irq.vector, irq.cause, irq.data});
  return out;
}

}  // namespace rpci::agent
