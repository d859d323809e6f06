#ifndef RPCI_AGENT_VFIO_VFIO_BACKEND_H_
#define RPCI_AGENT_VFIO_VFIO_BACKEND_H_

// The `vfio` backend: a real PCI function exported through VFIO as a
// SessionDevice (docs/sessions.md, "Real devices through VFIO").
//  - BARs: every memory BAR, writable; the MSI-X table and PBA read as zero
//    and refuse writes. The mirror shows the first `mirror_bytes` of each BAR
//    (the register file); beyond that the BAR is write-only through the
//    session (doorbells), so a push never reads thousands of registers or
//    triggers read side effects there.
//  - DMA: the session's DMA space is pinned host memory mapped through the
//    IOMMU at IOVA 0, so a device address is an offset into the DMA space,
//    exactly as for rpci-emu.
//  - Interrupts: MSI-X (or MSI) vectors on eventfds; TakeInterrupts reports
//    the vectors that fired.
//  - Reset between tenants: VFIO_DEVICE_RESET, then the DMA space zeroed and
//    pending interrupts dropped; a function without a reset is never clean.
//  - Faults (a watcher thread): an uncorrectable error the kernel's AER
//    driver reports makes the function Unhealthy until its next reset works;
//    the kernel's request to release it (removal, unbind) releases it at once
//    (so the removal can finish) and makes it Unhealthy; when a removed
//    function comes back (rescan) it is opened again, reset by the kernel,
//    with the DMA space zeroed, and Healthy again.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/session/session_device.h"
#include "agent/vfio/vfio_device.h"

namespace rpci::agent::vfio {

struct VfioBackendOptions {
  VfioOptions vfio;                 // sysfs/dev roots, bdf, unbind policy
  uint64_t dma_size = 4ull << 20;   // pinned and mapped at IOVA 0
  uint64_t mirror_bytes = 4096;     // of each BAR, shown in the mirror
  int interrupt_vectors = 8;        // MSI-X vectors routed (MSI: what it has)
};

class VfioBackend final : public SessionDevice {
 public:
  // Opens the function (VfioDevice::Open), pins and maps the DMA space and
  // routes its interrupts. Errors name the function and the failing step.
  static absl::StatusOr<std::unique_ptr<VfioBackend>> Open(const VfioBackendOptions& options);
  ~VfioBackend() override;

  std::string kind() const override { return "vfio"; }
  std::vector<Bar> Bars() const override;
  absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) override;
  absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) override;
  uint8_t* dma_space() override { return dma_; }
  uint64_t dma_size() const override { return dma_size_; }
  std::vector<Interrupt> TakeInterrupts() override;
  // Device reset, DMA space zeroed, pending interrupts dropped.
  absl::Status Reset() override;

  // Readable while a vector's eventfd has fired and TakeInterrupts has not
  // taken it (an epoll set of interrupt_fds()).
  int interrupt_fd() override { return epoll_fd_; }
  const std::vector<int>& interrupt_fds() const { return device_->interrupt_fds(); }
  // OK while the function is present and held, reported no uncorrectable
  // error since its last reset and its last reset worked; otherwise why it
  // must not be used.
  absl::Status Health() const override;
  // The open function; only while Health() does not say it was released.
  VfioDevice& device() { return *device_; }

 private:
  VfioBackend() = default;
  // Opens the function, maps the DMA space, routes interrupts into the epoll set.
  absl::Status OpenDeviceLocked();
  void WatchFaults();
  // One pass of the watcher after poll: latch an error, release on request,
  // reopen a released function that went away and came back.
  void HandleFaultsLocked();
  absl::Status ReleasedLocked() const;

  VfioBackendOptions options_;
  mutable std::mutex mu_;  // device_ and the health state; the watcher swaps device_
  std::unique_ptr<VfioDevice> device_;
  std::vector<Bar> bars_;  // as first opened
  absl::Status released_;  // not OK while the function is released
  ino_t released_node_ = 0;  // the function's sysfs node when released
  absl::Status fault_;     // an uncorrectable error, until a reset works
  absl::Status last_reset_;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;
  std::thread watcher_;
  uint8_t* dma_ = nullptr;
  uint64_t dma_size_ = 0;
};

}  // namespace rpci::agent::vfio

#endif  // RPCI_AGENT_VFIO_VFIO_BACKEND_H_
