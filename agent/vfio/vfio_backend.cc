#include "agent/vfio/vfio_backend.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
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
  void* mem = mmap(nullptr, options.dma_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("vfio: DMA space of ", options.dma_size, " bytes: ", std::strerror(errno)));
  }
  b->dma_ = static_cast<uint8_t*>(mem);
  b->dma_size_ = options.dma_size;
  b->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  b->stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (b->epoll_fd_ < 0 || b->stop_fd_ < 0) {
    return absl::InternalError(absl::StrCat("vfio: epoll/eventfd: ", std::strerror(errno)));
  }
  {
    std::lock_guard<std::mutex> lock(b->mu_);
    if (absl::Status s = b->OpenDeviceLocked(); !s.ok()) return s;
  }
  b->watcher_ = std::thread([p = b.get()] { p->WatchFaults(); });
  return b;
}

absl::Status VfioBackend::OpenDeviceLocked() {
  absl::StatusOr<std::unique_ptr<VfioDevice>> dev = VfioDevice::Open(options_.vfio);
  if (!dev.ok()) return dev.status();
  if (absl::Status s = (*dev)->MapDma(dma_, dma_size_, 0); !s.ok()) return s;
  absl::StatusOr<int> vectors = (*dev)->EnableInterrupts(options_.interrupt_vectors);
  if (!vectors.ok() && !absl::IsFailedPrecondition(vectors.status())) return vectors.status();
  for (int fd : (*dev)->interrupt_fds()) {
    epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      return absl::InternalError(absl::StrCat("vfio: epoll_ctl: ", std::strerror(errno)));
    }
  }
  device_ = *std::move(dev);
  // Fixed at the first open: a function opened again is the same function.
  if (bars_.empty()) {
    for (const VfioBar& b : device_->bars()) bars_.push_back({b.index, b.size, true});
  }
  return absl::OkStatus();
}

VfioBackend::~VfioBackend() {
  if (watcher_.joinable()) {
    const uint64_t one = 1;
    if (write(stop_fd_, &one, sizeof(one)) != sizeof(one)) std::abort();
    watcher_.join();
  }
  device_.reset();  // unmaps DMA before the memory goes
  for (int fd : {epoll_fd_, stop_fd_}) {
    if (fd >= 0) close(fd);
  }
  if (dma_ != nullptr) munmap(dma_, dma_size_);
}

namespace {
// The sysfs node of a path (0 when absent): a device removed and found again
// is a new node at the same path.
ino_t SysfsNode(const std::string& path) {
  struct stat st = {};
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Whether a notification eventfd fired (and clears it).
bool Fired(int fd) {
  uint64_t n = 0;
  return fd >= 0 && read(fd, &n, sizeof(n)) == sizeof(n) && n > 0;
}
}  // namespace

void VfioBackend::WatchFaults() {
  while (true) {
    // Only this thread replaces device_, so its fds stay open while polled.
    std::vector<pollfd> fds = {{stop_fd_, POLLIN, 0}};
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (device_ != nullptr) {
        for (int fd : {device_->error_fd(), device_->request_fd()}) {
          if (fd >= 0) fds.push_back({fd, POLLIN, 0});
        }
      }
    }
    poll(fds.data(), fds.size(), 1000);
    if (fds[0].revents != 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    HandleFaultsLocked();
  }
}

void VfioBackend::HandleFaultsLocked() {
  const std::string& bdf = options_.vfio.bind.bdf;
  const std::string dir = absl::StrCat(options_.vfio.bind.sysfs_root, "/bus/pci/devices/", bdf);
  if (device_ != nullptr) {
    if (Fired(device_->error_fd())) {
      fault_ = absl::FailedPreconditionError(absl::StrCat("vfio: ", bdf, " reported an uncorrectable PCIe error"));
    }
    if (Fired(device_->request_fd())) {
      device_.reset();  // DMA unmapped, device closed: the kernel's removal goes on
      released_ = absl::UnavailableError(
          absl::StrCat("vfio: ", bdf, " released: the kernel asked for it (removal or unbind)"));
      released_node_ = SysfsNode(dir);
    }
    return;
  }
  // Released: a function that left and came back (rescan: a new sysfs node
  // at the same address) is opened again; one that stayed (an unbind) is
  // left to the operator.
  const ino_t node = SysfsNode(dir);
  if (node == 0 || node == released_node_ || !OpenDeviceLocked().ok()) return;
  std::memset(dma_, 0, dma_size_);
  released_ = fault_ = last_reset_ = absl::OkStatus();
}

absl::Status VfioBackend::ReleasedLocked() const {
  return device_ == nullptr ? released_ : absl::OkStatus();
}

std::vector<SessionDevice::Bar> VfioBackend::Bars() const { return bars_; }

absl::Status VfioBackend::WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  absl::StatusOr<Bar> b = CheckRegisterWrite(Bars(), bar, offset, width, value);
  if (!b.ok()) return b.status();
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status r = ReleasedLocked(); !r.ok()) return r;
  return width == 4 ? device_->Write32(bar, offset, static_cast<uint32_t>(value)) : device_->Write64(bar, offset, value);
}

absl::Status VfioBackend::ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) {
  absl::StatusOr<Bar> b = CheckBarRead(Bars(), bar, offset, len);
  if (!b.ok()) return b.status();
  const uint64_t shown = std::min(options_.mirror_bytes, b->size);
  std::vector<uint8_t> tmp(len, 0);
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status r = ReleasedLocked(); !r.ok()) return r;
  if (offset < shown) {
    uint64_t n = std::min(len, shown - offset);
    if (absl::Status s = device_->ReadBar(bar, offset, n, tmp.data()); !s.ok()) return s;
  }
  std::memcpy(out, tmp.data(), len);
  return absl::OkStatus();
}

std::vector<SessionDevice::Interrupt> VfioBackend::TakeInterrupts() {
  std::vector<Interrupt> out;
  std::lock_guard<std::mutex> lock(mu_);
  if (device_ == nullptr) return out;
  for (uint16_t v : device_->TakeInterrupts()) out.push_back({v, 0, 0});
  return out;
}

absl::Status VfioBackend::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string& bdf = options_.vfio.bind.bdf;
  // A released function is not the agent's to reset (the kernel resets it
  // when it is opened again): only the DMA space is scrubbed.
  // Otherwise reset first: the device stops DMA before its memory is scrubbed.
  if (device_ != nullptr) last_reset_ = device_->Reset();
  std::memset(dma_, 0, dma_size_);
  if (device_ != nullptr) device_->TakeInterrupts();
  if (!last_reset_.ok()) {
    return absl::Status(last_reset_.code(), absl::StrCat("vfio: ", bdf, " not reset: ", last_reset_.message()));
  }
  fault_ = absl::OkStatus();  // the reset cleared what the error left
  return absl::OkStatus();
}

absl::Status VfioBackend::Health() const {
  const std::string& bdf = options_.vfio.bind.bdf;
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status r = ReleasedLocked(); !r.ok()) return r;
  const std::string dir = absl::StrCat(options_.vfio.bind.sysfs_root, "/bus/pci/devices/", bdf);
  if (!sysfs::Exists(dir)) return absl::UnavailableError(absl::StrCat("vfio: ", bdf, " is gone"));
  if (!fault_.ok()) return fault_;
  if (!last_reset_.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("vfio: ", bdf, " reset failed: ", last_reset_.message()));
  }
  return absl::OkStatus();
}

}  // namespace rpci::agent::vfio
