#ifndef RPCI_EXAMPLES_NVME_NVME_DRIVER_H_
#define RPCI_EXAMPLES_NVME_NVME_DRIVER_H_

// A small userspace NVMe driver (NVMe 1.4 base spec): admin queues, Identify
// Controller and Namespace, one I/O queue pair, block writes and reads. It
// talks to the controller through an NvmeTransport: through librpci for a
// remote device (nvme_main.cc), or VFIO on the device's own host (the VM
// tests of agent/vfio).

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rpci::examples::nvme {

// What the driver needs of a controller: BAR0 registers, DMA memory it can
// address, and its interrupts.
class NvmeTransport {
 public:
  virtual ~NvmeTransport() = default;
  virtual absl::StatusOr<uint32_t> Read32(uint64_t offset) = 0;
  virtual absl::StatusOr<uint64_t> Read64(uint64_t offset) = 0;
  virtual absl::Status Write32(uint64_t offset, uint32_t value) = 0;
  virtual absl::Status Write64(uint64_t offset, uint64_t value) = 0;
  // A doorbell write: sent at once, after every earlier write.
  virtual absl::Status Doorbell(uint64_t offset, uint32_t value) = 0;

  struct Dma {
    uint8_t* host = nullptr;
    uint64_t device_addr = 0;
    uint64_t size = 0;
  };
  // Page-aligned DMA memory (never at device address 0: QEMU refuses ASQ 0).
  virtual absl::StatusOr<Dma> AllocDma(uint64_t size) = 0;
  // Makes the host's bytes the device's before a doorbell that refers to them.
  virtual absl::Status ToDevice(const Dma& dma, uint64_t offset, uint64_t len) = 0;
  // Makes the device's bytes visible in `host`.
  virtual absl::Status FromDevice(const Dma& dma, uint64_t offset, uint64_t len) = 0;
  // Waits for the next interrupt; DEADLINE_EXCEEDED after `timeout`.
  virtual absl::Status WaitInterrupt(absl::Duration timeout) = 0;
};

struct ControllerInfo {
  std::string model;   // "QEMU NVMe Ctrl"
  std::string serial;
  uint32_t namespaces = 0;
};

struct NamespaceInfo {
  uint64_t blocks = 0;
  uint32_t block_size = 0;
};

class NvmeDriver {
 public:
  // Resets and enables the controller with admin queues in DMA memory.
  static absl::StatusOr<std::unique_ptr<NvmeDriver>> Start(NvmeTransport* transport,
                                                           absl::Duration timeout = absl::Seconds(20));

  absl::StatusOr<ControllerInfo> IdentifyController();
  absl::StatusOr<NamespaceInfo> IdentifyNamespace(uint32_t nsid);
  // Creates I/O completion and submission queue 1 (interrupts on vector 0).
  absl::Status CreateIoQueues();
  // Writes/reads `count` blocks at `lba` of namespace `nsid` from/into `data`
  // (count * block_size bytes, at most two pages).
  absl::Status WriteBlocks(uint32_t nsid, uint64_t lba, uint32_t count, const uint8_t* data, uint32_t block_size);
  absl::Status ReadBlocks(uint32_t nsid, uint64_t lba, uint32_t count, uint8_t* data, uint32_t block_size);
  // Clears CC.EN and waits for the controller to stop.
  absl::Status Shutdown();

  uint64_t interrupts_seen() const { return interrupts_; }

 private:
  struct Queue {
    NvmeTransport::Dma mem;
    uint16_t id = 0;
    uint16_t entries = 0;
    uint16_t tail = 0;    // submission
    uint16_t head = 0;    // completion
    uint8_t phase = 1;    // completion
  };
  struct Command {
    uint8_t opcode = 0;
    uint32_t nsid = 0;
    uint64_t prp1 = 0, prp2 = 0;
    uint32_t cdw10 = 0, cdw11 = 0, cdw12 = 0;
  };

  NvmeDriver(NvmeTransport* t, absl::Duration timeout) : t_(t), timeout_(timeout) {}
  absl::Status Enable();
  absl::Status WaitReady(bool ready);
  absl::Status Submit(Queue& sq, Queue& cq, const Command& cmd);
  // Identify with CNS `cns` (1 controller, 0 namespace `nsid`) into buffer_,
  // copied back to the host.
  absl::Status Identify(uint32_t cns, uint32_t nsid);
  absl::Status Io(uint8_t opcode, uint32_t nsid, uint64_t lba, uint32_t count, uint32_t block_size);
  uint64_t SqDoorbell(uint16_t qid) const { return 0x1000 + (2 * qid) * (4u << stride_); }
  uint64_t CqDoorbell(uint16_t qid) const { return 0x1000 + (2 * qid + 1) * (4u << stride_); }

  NvmeTransport* t_;
  absl::Duration timeout_;
  uint32_t stride_ = 0;
  uint16_t next_cid_ = 1;
  Queue admin_sq_, admin_cq_, io_sq_, io_cq_;
  NvmeTransport::Dma buffer_;  // identify data and I/O blocks (two pages)
  uint64_t interrupts_ = 0;
};

}  // namespace rpci::examples::nvme

#endif  // RPCI_EXAMPLES_NVME_NVME_DRIVER_H_
