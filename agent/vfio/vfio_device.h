#ifndef RPCI_AGENT_VFIO_VFIO_DEVICE_H_
#define RPCI_AGENT_VFIO_VFIO_DEVICE_H_

// One PCI function owned by the agent through VFIO (vfio-pci, type1v2 IOMMU):
// its BAR regions (mmap where the kernel allows it, region read/write
// elsewhere), with the MSI-X table and PBA hidden; config space with the
// tenant write filter (config_filter.h); the DMA space mapped through the
// IOMMU at an IOVA window; MSI/MSI-X delivered on eventfds; reset.
//
// The kernel is the world here: everything goes through /dev/vfio and sysfs
// (roots configurable), and the tests run against a real kernel in the test
// machine (tests/vm).

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/vfio/bind.h"
#include "agent/vfio/config_filter.h"

namespace rpci::agent::vfio {

struct VfioOptions {
  BindOptions bind;               // sysfs root, bdf, unbind policy
  std::string dev_root = "/dev";  // where vfio/vfio and vfio/<group> are
};

// A byte range [offset, offset + size) of a region.
struct Range {
  uint64_t offset = 0;
  uint64_t size = 0;
  bool Contains(uint64_t off, uint64_t len) const { return off >= offset && off - offset + len <= size; }
  bool Overlaps(uint64_t off, uint64_t len) const { return off < offset + size && offset < off + len; }
};

// A memory BAR as the agent exposes it.
struct VfioBar {
  uint16_t index = 0;
  uint64_t size = 0;
  std::vector<Range> mmapped;  // reached by loads/stores on the agent's mapping
  std::vector<Range> hidden;   // MSI-X table and PBA: read as zero, writes refused
};

enum class IrqKind { kNone, kMsi, kMsix };

class VfioDevice {
 public:
  // Binds the function (bind.h), opens its group (FAILED_PRECONDITION when it
  // is not viable: another function of the group is bound to a host driver),
  // a type1v2 container, the device; reads its regions and maps its BARs;
  // enables memory decoding and bus mastering.
  static absl::StatusOr<std::unique_ptr<VfioDevice>> Open(const VfioOptions& options);
  // Disables interrupts, unmaps DMA and closes the device (the kernel resets it).
  ~VfioDevice();
  VfioDevice(const VfioDevice&) = delete;
  VfioDevice& operator=(const VfioDevice&) = delete;

  const std::string& bdf() const { return bdf_; }
  int iommu_group() const { return group_id_; }
  const std::vector<VfioBar>& bars() const { return bars_; }
  bool can_reset() const { return can_reset_; }

  // BAR access. NOT_FOUND for a BAR the device lacks, INVALID_ARGUMENT when
  // misaligned, OUT_OF_RANGE outside the BAR, PERMISSION_DENIED for a write
  // to the MSI-X table or PBA (reads of them give 0).
  absl::StatusOr<uint32_t> Read32(uint16_t bar, uint64_t offset);
  absl::StatusOr<uint64_t> Read64(uint16_t bar, uint64_t offset);
  absl::Status Write32(uint16_t bar, uint64_t offset, uint32_t value);
  absl::Status Write64(uint16_t bar, uint64_t offset, uint64_t value);
  // `len` bytes at `offset` (multiples of 4) as 32-bit reads.
  absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out);

  // Config space: the first `len` bytes; a tenant's write (filtered).
  absl::StatusOr<std::vector<uint8_t>> ReadConfig(uint16_t len = 256);
  absl::Status TenantWriteConfig(uint16_t offset, uint8_t width, uint32_t value);

  // Maps `size` bytes at `host` (page-aligned, stays valid until unmapped) at
  // `iova` for device reads and writes. INVALID_ARGUMENT when unaligned or
  // outside the IOMMU's usable IOVA ranges.
  absl::Status MapDma(void* host, uint64_t size, uint64_t iova);
  absl::Status UnmapDma(uint64_t iova, uint64_t size);

  // Routes `vectors` MSI-X vectors (MSI when the function has no MSI-X) to
  // eventfds. Returns the number routed; FAILED_PRECONDITION without MSI/MSI-X.
  absl::StatusOr<int> EnableInterrupts(int vectors);
  void DisableInterrupts();
  IrqKind irq_kind() const { return irq_kind_; }
  // The eventfds (non-blocking), by vector: wait on them with poll/epoll.
  const std::vector<int>& interrupt_fds() const { return irq_fds_; }
  // Vectors that fired since the last call, once each per firing, in vector order.
  std::vector<uint16_t> TakeInterrupts();

  // The kernel's fault notifications on non-blocking eventfds, routed at
  // Open; -1 where the function has none. `error`: the AER driver reported an
  // uncorrectable error of the function (VFIO_PCI_ERR_IRQ_INDEX). `request`:
  // the kernel asks the agent to release the function (removal or unbind;
  // VFIO_PCI_REQ_IRQ_INDEX); the removal waits until the device is closed.
  int error_fd() const { return err_fd_; }
  int request_fd() const { return req_fd_; }

  // VFIO_DEVICE_RESET (FLR, or the reset the kernel has for the function),
  // then memory decoding and bus mastering on again and interrupts re-routed.
  // FAILED_PRECONDITION when the function has no reset.
  absl::Status Reset();

 private:
  struct Region {
    uint64_t size = 0;
    uint64_t offset = 0;  // in the device fd
    uint32_t flags = 0;
  };
  struct Mapping {
    uint16_t bar = 0;
    Range range;
    uint8_t* base = nullptr;
  };

  VfioDevice() = default;
  absl::Status OpenContainerAndGroup(const VfioOptions& options);
  absl::Status ReadRegions();
  absl::Status MapBar(uint16_t index, const std::vector<Range>& sparse, bool mmappable);
  absl::Status EnableBusMaster();
  absl::StatusOr<const VfioBar*> CheckAccess(uint16_t bar, uint64_t offset, uint8_t width) const;
  uint8_t* Mapped(uint16_t bar, uint64_t offset, uint8_t width) const;
  absl::Status RegionIo(bool write, uint16_t bar, uint64_t offset, void* data, uint8_t width);
  // A checked access: outside a BAR or misaligned is refused; the MSI-X
  // table and PBA (the agent's) read as 0 and refuse writes.
  absl::Status BarAccess(bool write, uint16_t bar, uint64_t offset, void* data, uint8_t width);
  absl::Status ValidateIova(uint64_t iova, uint64_t size);
  absl::Status RouteInterrupts();
  // One eventfd on a single-vector IRQ index (error, request); -1 if none.
  int RouteNotification(uint32_t index);

  std::string bdf_;
  int group_id_ = -1;
  int container_fd_ = -1;
  int group_fd_ = -1;
  int device_fd_ = -1;
  bool can_reset_ = false;
  std::vector<Region> regions_;  // by VFIO region index
  std::vector<VfioBar> bars_;
  std::vector<Mapping> mappings_;
  std::vector<std::pair<uint64_t, uint64_t>> dma_maps_;  // iova, size
  IrqKind irq_kind_ = IrqKind::kNone;
  std::vector<int> irq_fds_;
  int err_fd_ = -1;
  int req_fd_ = -1;
  std::mutex mu_;  // region I/O and interrupt routing
};

}  // namespace rpci::agent::vfio

#endif  // RPCI_AGENT_VFIO_VFIO_DEVICE_H_
