#ifndef RPCI_EXAMPLES_NVME_LIBRPCI_TRANSPORT_H_
#define RPCI_EXAMPLES_NVME_LIBRPCI_TRANSPORT_H_

#include "examples/nvme/nvme_driver.h"
#include "librpci/device.h"

namespace rpci::examples::nvme {

// The NVMe driver's transport over an attached librpci device: BAR0 through
// the session (reads are ordered after posted writes and refresh the
// mirror), DMA memory in the session's DMA space (device address = offset,
// docs/sessions.md), interrupts as session completions.
class LibrpciTransport : public NvmeTransport {
 public:
  explicit LibrpciTransport(lib::Device* dev) : dev_(dev) {}
  absl::StatusOr<uint32_t> Read32(uint64_t offset) override;
  absl::StatusOr<uint64_t> Read64(uint64_t offset) override;
  absl::Status Write32(uint64_t offset, uint32_t value) override { return dev_->Write32(0, offset, value); }
  absl::Status Write64(uint64_t offset, uint64_t value) override { return dev_->Write64(0, offset, value); }
  absl::Status Doorbell(uint64_t offset, uint32_t value) override { return dev_->RingDoorbell32(0, offset, value); }
  absl::StatusOr<Dma> AllocDma(uint64_t size) override;
  absl::Status ToDevice(const Dma& dma, uint64_t offset, uint64_t len) override;
  absl::Status FromDevice(const Dma& dma, uint64_t offset, uint64_t len) override;
  absl::Status WaitInterrupt(absl::Duration timeout) override;

 private:
  lib::DmaBuffer Buffer(const Dma& dma) const { return {dma.device_addr, dma.host, dma.size}; }
  lib::Device* dev_;
};

}  // namespace rpci::examples::nvme

#endif  // RPCI_EXAMPLES_NVME_LIBRPCI_TRANSPORT_H_
