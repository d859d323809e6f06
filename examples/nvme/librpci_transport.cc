#include "examples/nvme/librpci_transport.h"

namespace rpci::examples::nvme {

absl::StatusOr<uint32_t> LibrpciTransport::Read32(uint64_t offset) {
  // A status register changes on its own: bring the mirror up to date first.
  if (absl::Status s = dev_->Refresh(absl::Seconds(5)); !s.ok()) return s;
  return dev_->Read32(0, offset);
}

absl::StatusOr<uint64_t> LibrpciTransport::Read64(uint64_t offset) {
  if (absl::Status s = dev_->Refresh(absl::Seconds(5)); !s.ok()) return s;
  return dev_->Read64(0, offset);
}

absl::StatusOr<NvmeTransport::Dma> LibrpciTransport::AllocDma(uint64_t size) {
  size = (size + 4095) & ~uint64_t{4095};
  absl::StatusOr<lib::DmaBuffer> b = dev_->AllocDma(size, 4096);
  if (b.ok() && b->device_addr == 0) b = dev_->AllocDma(size, 4096);  // keep device address 0 unused
  if (!b.ok()) return b.status();
  // Not mapped from the device: the driver writes its queues and buffers
  // while completions it polls for are still unread, and a push the agent
  // makes for an earlier interrupt would land over those writes (a
  // submission entry read back as zeros, a block written with stale bytes).
  // It reads what the device wrote with FromDevice instead.
  return Dma{b->host, b->device_addr, b->size};
}

absl::Status LibrpciTransport::ToDevice(const Dma& dma, uint64_t offset, uint64_t len) {
  return dev_->FlushToDevice(Buffer(dma), offset, len);
}

absl::Status LibrpciTransport::FromDevice(const Dma& dma, uint64_t offset, uint64_t len) {
  return dev_->SyncFromDevice(Buffer(dma), offset, len);
}

absl::Status LibrpciTransport::WaitInterrupt(absl::Duration timeout) {
  absl::StatusOr<lib::Completion> c = dev_->WaitCompletion(timeout);
  return c.ok() ? absl::OkStatus() : c.status();
}

}  // namespace rpci::examples::nvme
