#include "agent/vfio/vfio_backend.h"

#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/backends/bar_access.h"
#include "agent/inventory/sysfs_util.h"

namespace rpci::agent::vfio {

absl::StatusOr<std::unique_ptr<VfioBackend>> VfioBackend::Open(const VfioBackendOptions& options) {
  if (options.dma_size == 0 || options.dma_size % 4096 != 0) {
    return absl::InvalidArgumentError("vfio: the DMA space must be a non-zero multiple of 4096 bytes");
  }
  std::unique_ptr<VfioBackend> b(new VfioBackend());
  b->options_ = options;
  absl::StatusOr<std::unique_ptr<VfioDevice>> dev = VfioDevice::Open(options.vfio);
  if (!dev.ok()) return dev.status();
  b->device_ = *std::move(dev);
  void* mem = mmap(nullptr, options.dma_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("vfio: DMA space of ", options.dma_size, " bytes: ", std::strerror(errno)));
  }
  b->dma_ = static_cast<uint8_t*>(mem);
  b->dma_size_ = options.dma_size;
  if (absl::Status s = b->device_->MapDma(b->dma_, b->dma_size_, 0); !s.ok()) return s;
  absl::StatusOr<int> vectors = b->device_->EnableInterrupts(options.interrupt_vectors);
  if (!vectors.ok() && !absl::IsFailedPrecondition(vectors.status())) return vectors.status();
  b->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (b->epoll_fd_ < 0) return absl::InternalError(absl::StrCat("vfio: epoll_create1: ", std::strerror(errno)));
  for (int fd : b->device_->interrupt_fds()) {
    epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(b->epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      return absl::InternalError(absl::StrCat("vfio: epoll_ctl: ", std::strerror(errno)));
    }
  }
  return b;
}

VfioBackend::~VfioBackend() {
  if (epoll_fd_ >= 0) close(epoll_fd_);
  device_.reset();  // unmaps DMA before the memory goes
  if (dma_ != nullptr) munmap(dma_, dma_size_);
}

std::vector<SessionDevice::Bar> VfioBackend::Bars() const {
  std::vector<Bar> bars;
  for (const VfioBar& b : device_->bars()) bars.push_back({b.index, b.size, true});
  return bars;
}

absl::Status VfioBackend::WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  absl::StatusOr<Bar> b = CheckRegisterWrite(Bars(), bar, offset, width, value);
  if (!b.ok()) return b.status();
  return width == 4 ? device_->Write32(bar, offset, static_cast<uint32_t>(value)) : device_->Write64(bar, offset, value);
}

absl::Status VfioBackend::ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) {
  absl::StatusOr<Bar> b = CheckBarRead(Bars(), bar, offset, len);
  if (!b.ok()) return b.status();
  const uint64_t shown = std::min(options_.mirror_bytes, b->size);
  std::vector<uint8_t> tmp(len, 0);
  if (offset < shown) {
    uint64_t n = std::min(len, shown - offset);
    if (absl::Status s = device_->ReadBar(bar, offset, n, tmp.data()); !s.ok()) return s;
  }
  std::memcpy(out, tmp.data(), len);
  return absl::OkStatus();
}

std::vector<SessionDevice::Interrupt> VfioBackend::TakeInterrupts() {
  std::vector<Interrupt> out;
  for (uint16_t v : device_->TakeInterrupts()) out.push_back({v, 0, 0});
  return out;
}

absl::Status VfioBackend::Reset() {
  // Reset first: the device stops DMA before its memory is scrubbed.
  last_reset_ = device_->Reset();
  std::memset(dma_, 0, dma_size_);
  device_->TakeInterrupts();
  if (!last_reset_.ok()) {
    return absl::Status(last_reset_.code(), absl::StrCat("vfio: ", device_->bdf(), " not reset: ", last_reset_.message()));
  }
  return absl::OkStatus();
}

absl::Status VfioBackend::Health() const {
  const std::string dir = absl::StrCat(options_.vfio.bind.sysfs_root, "/bus/pci/devices/", device_->bdf());
  if (!sysfs::Exists(dir)) return absl::UnavailableError(absl::StrCat("vfio: ", device_->bdf(), " is gone"));
  if (!last_reset_.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("vfio: ", device_->bdf(), " reset failed: ", last_reset_.message()));
  }
  return absl::OkStatus();
}

}  // namespace rpci::agent::vfio
