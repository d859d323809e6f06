#include "agent/vfio/vfio_device.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/inventory/sysfs_util.h"

namespace rpci::agent::vfio {
namespace {

constexpr uint64_t kPage = 4096;
constexpr int kBarCount = 6;

std::string Errno() { return std::strerror(errno); }

absl::Status IoctlError(const std::string& what, const std::string& bdf) {
  return absl::InternalError(absl::StrCat("vfio: ", bdf, ": ", what, ": ", Errno()));
}

// A VFIO info struct with its capability chain: the ioctl is repeated with
// the argsz the kernel asked for.
template <typename Info>
absl::StatusOr<std::vector<uint8_t>> GetInfoWithCaps(int fd, unsigned long request, const Info& first) {
  std::vector<uint8_t> buf(sizeof(Info));
  std::memcpy(buf.data(), &first, sizeof(Info));
  reinterpret_cast<Info*>(buf.data())->argsz = sizeof(Info);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (ioctl(fd, request, buf.data()) != 0) return absl::InternalError(Errno());
    uint32_t want = reinterpret_cast<Info*>(buf.data())->argsz;
    if (want <= buf.size()) return buf;
    buf.assign(want, 0);
    std::memcpy(buf.data(), &first, sizeof(Info));
    reinterpret_cast<Info*>(buf.data())->argsz = want;
  }
  return buf;
}

// The capability with `id` in an info buffer's chain starting at `offset`.
const vfio_info_cap_header* FindCap(const std::vector<uint8_t>& buf, uint32_t offset, uint16_t id) {
  for (int n = 0; offset != 0 && offset + sizeof(vfio_info_cap_header) <= buf.size() && n < 64; ++n) {
    auto* h = reinterpret_cast<const vfio_info_cap_header*>(buf.data() + offset);
    if (h->id == id) return h;
    offset = h->next;
  }
  return nullptr;
}

// `ranges` minus `holes` rounded out to pages.
std::vector<Range> SubtractPages(std::vector<Range> ranges, const std::vector<Range>& holes) {
  for (const Range& hole : holes) {
    uint64_t start = hole.offset & ~(kPage - 1);
    uint64_t end = (hole.offset + hole.size + kPage - 1) & ~(kPage - 1);
    std::vector<Range> out;
    for (const Range& r : ranges) {
      if (!r.Overlaps(start, end - start)) {
        out.push_back(r);
        continue;
      }
      if (r.offset < start) out.push_back({r.offset, start - r.offset});
      if (r.offset + r.size > end) out.push_back({end, r.offset + r.size - end});
    }
    ranges = out;
  }
  return ranges;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VfioDevice>> VfioDevice::Open(const VfioOptions& options) {
  if (absl::Status s = BindToVfioPci(options.bind); !s.ok()) return s;
  std::unique_ptr<VfioDevice> d(new VfioDevice());
  d->bdf_ = options.bind.bdf;
  if (absl::Status s = d->OpenContainerAndGroup(options); !s.ok()) return s;
  d->device_fd_ = ioctl(d->group_fd_, VFIO_GROUP_GET_DEVICE_FD, d->bdf_.c_str());
  if (d->device_fd_ < 0) return IoctlError("VFIO_GROUP_GET_DEVICE_FD", d->bdf_);
  if (absl::Status s = d->ReadRegions(); !s.ok()) return s;
  if (absl::Status s = d->EnableBusMaster(); !s.ok()) return s;
  d->err_fd_ = d->RouteNotification(VFIO_PCI_ERR_IRQ_INDEX);
  d->req_fd_ = d->RouteNotification(VFIO_PCI_REQ_IRQ_INDEX);
  return d;
}

int VfioDevice::RouteNotification(uint32_t index) {
  vfio_irq_info info = {};
  info.argsz = sizeof(info);
  info.index = index;
  if (ioctl(device_fd_, VFIO_DEVICE_GET_IRQ_INFO, &info) != 0 || info.count == 0) return -1;
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return -1;
  std::vector<uint8_t> buf(sizeof(vfio_irq_set) + sizeof(int32_t));
  auto* set = reinterpret_cast<vfio_irq_set*>(buf.data());
  set->argsz = buf.size();
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = index;
  set->start = 0;
  set->count = 1;
  const int32_t fd32 = fd;
  std::memcpy(set->data, &fd32, sizeof(fd32));
  if (ioctl(device_fd_, VFIO_DEVICE_SET_IRQS, set) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

absl::Status VfioDevice::OpenContainerAndGroup(const VfioOptions& options) {
  sysfs::Link group = sysfs::ReadLink(absl::StrCat(options.bind.sysfs_root, "/bus/pci/devices/", bdf_, "/iommu_group"));
  if (group.state != sysfs::LinkState::kResolved || !absl::SimpleAtoi(group.target_name, &group_id_)) {
    return absl::FailedPreconditionError(absl::StrCat("vfio: ", bdf_, " has no IOMMU group (is the IOMMU on?)"));
  }
  container_fd_ = open((options.dev_root + "/vfio/vfio").c_str(), O_RDWR | O_CLOEXEC);
  if (container_fd_ < 0) return absl::UnavailableError(absl::StrCat("vfio: ", options.dev_root, "/vfio/vfio: ", Errno()));
  if (ioctl(container_fd_, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
      ioctl(container_fd_, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0) {
    return absl::FailedPreconditionError("vfio: the kernel has no VFIO type1v2 IOMMU");
  }
  const std::string group_path = absl::StrCat(options.dev_root, "/vfio/", group_id_);
  group_fd_ = open(group_path.c_str(), O_RDWR | O_CLOEXEC);
  if (group_fd_ < 0) return absl::UnavailableError(absl::StrCat("vfio: ", group_path, ": ", Errno()));
  vfio_group_status status = {};
  status.argsz = sizeof(status);
  if (ioctl(group_fd_, VFIO_GROUP_GET_STATUS, &status) != 0) return IoctlError("VFIO_GROUP_GET_STATUS", bdf_);
  if ((status.flags & VFIO_GROUP_FLAGS_VIABLE) == 0) {
    return absl::FailedPreconditionError(absl::StrCat("vfio: IOMMU group ", group_id_, " of ", bdf_,
                                                      " is not viable: another function in it is bound to a host driver"));
  }
  if (ioctl(group_fd_, VFIO_GROUP_SET_CONTAINER, &container_fd_) != 0) return IoctlError("VFIO_GROUP_SET_CONTAINER", bdf_);
  if (ioctl(container_fd_, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) != 0) return IoctlError("VFIO_SET_IOMMU type1v2", bdf_);
  return absl::OkStatus();
}

absl::Status VfioDevice::ReadRegions() {
  vfio_device_info info = {};
  info.argsz = sizeof(info);
  if (ioctl(device_fd_, VFIO_DEVICE_GET_INFO, &info) != 0) return IoctlError("VFIO_DEVICE_GET_INFO", bdf_);
  can_reset_ = (info.flags & VFIO_DEVICE_FLAGS_RESET) != 0;
  regions_.resize(info.num_regions);
  std::vector<std::vector<Range>> sparse(kBarCount);
  std::vector<bool> has_sparse(kBarCount, false);
  for (uint32_t i = 0; i < info.num_regions; ++i) {
    vfio_region_info first = {};
    first.index = i;
    absl::StatusOr<std::vector<uint8_t>> buf = GetInfoWithCaps(device_fd_, VFIO_DEVICE_GET_REGION_INFO, first);
    if (!buf.ok()) continue;  // regions the function lacks (VGA ...) answer EINVAL
    auto* r = reinterpret_cast<const vfio_region_info*>(buf->data());
    regions_[i] = {r->size, r->offset, r->flags};
    if (i >= kBarCount || (r->flags & VFIO_REGION_INFO_FLAG_CAPS) == 0) continue;
    if (const auto* h = FindCap(*buf, r->cap_offset, VFIO_REGION_INFO_CAP_SPARSE_MMAP)) {
      auto* cap = reinterpret_cast<const vfio_region_info_cap_sparse_mmap*>(h);
      has_sparse[i] = true;
      for (uint32_t a = 0; a < cap->nr_areas; ++a) sparse[i].push_back({cap->areas[a].offset, cap->areas[a].size});
    }
  }
  if (regions_.size() <= VFIO_PCI_CONFIG_REGION_INDEX) return absl::InternalError("vfio: no config region");
  absl::StatusOr<std::vector<uint8_t>> config = ReadConfig(256);
  if (!config.ok()) return config.status();
  MsixLayout msix;
  bool has_msix = ReadMsix(*config, &msix);
  for (uint16_t i = 0; i < kBarCount; ++i) {
    uint32_t bar_reg = (*config)[0x10 + 4 * i] | ((*config)[0x11 + 4 * i] << 8);
    if (regions_[i].size == 0 || (bar_reg & 1) != 0) continue;  // absent, or an I/O BAR
    VfioBar bar;
    bar.index = i;
    bar.size = regions_[i].size;
    for (const BarRange& r : {msix.table, msix.pba}) {
      if (has_msix && r.bar == i) bar.hidden.push_back({r.offset, r.size});
    }
    bars_.push_back(bar);
    bool mmappable = (regions_[i].flags & VFIO_REGION_INFO_FLAG_MMAP) != 0;
    std::vector<Range> areas = has_sparse[i] ? sparse[i] : std::vector<Range>{{0, bar.size}};
    if (absl::Status s = MapBar(i, areas, mmappable); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status VfioDevice::MapBar(uint16_t index, const std::vector<Range>& areas, bool mmappable) {
  VfioBar& bar = bars_.back();
  if (!mmappable) return absl::OkStatus();
  for (const Range& r : SubtractPages(areas, bar.hidden)) {
    if (r.size == 0 || r.offset % kPage != 0) continue;
    void* p = mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, device_fd_, regions_[index].offset + r.offset);
    if (p == MAP_FAILED) continue;  // left to region read/write
    mappings_.push_back({index, r, static_cast<uint8_t*>(p)});
    bar.mmapped.push_back(r);
  }
  return absl::OkStatus();
}

absl::Status VfioDevice::EnableBusMaster() {
  uint16_t cmd = 0;
  const uint64_t off = regions_[VFIO_PCI_CONFIG_REGION_INDEX].offset + kPciCommand;
  if (pread(device_fd_, &cmd, 2, off) != 2) return IoctlError("reading the Command register", bdf_);
  cmd |= kCommandMemory | kCommandBusMaster;
  if (pwrite(device_fd_, &cmd, 2, off) != 2) return IoctlError("enabling bus mastering", bdf_);
  return absl::OkStatus();
}

VfioDevice::~VfioDevice() {
  DisableInterrupts();
  for (const auto& [iova, size] : dma_maps_) {
    vfio_iommu_type1_dma_unmap unmap = {};
    unmap.argsz = sizeof(unmap);
    unmap.iova = iova;
    unmap.size = size;
    ioctl(container_fd_, VFIO_IOMMU_UNMAP_DMA, &unmap);
  }
  for (const Mapping& m : mappings_) munmap(m.base, m.range.size);
  // The notification eventfds after the device: the kernel drops its
  // triggers when the device is closed.
  for (int fd : {device_fd_, group_fd_, container_fd_, err_fd_, req_fd_}) {
    if (fd >= 0) close(fd);
  }
}

absl::StatusOr<const VfioBar*> VfioDevice::CheckAccess(uint16_t bar, uint64_t offset, uint8_t width) const {
  for (const VfioBar& b : bars_) {
    if (b.index != bar) continue;
    if (offset % width != 0) {
      return absl::InvalidArgumentError(absl::StrFormat("BAR%d offset 0x%x is not %d-byte aligned", bar, offset, width));
    }
    if (offset > b.size || width > b.size - offset) {
      return absl::OutOfRangeError(absl::StrFormat("BAR%d access at 0x%x+%d leaves the BAR (0x%x bytes)", bar, offset,
                                                   width, b.size));
    }
    return &b;
  }
  return absl::NotFoundError(absl::StrFormat("%s has no memory BAR%d", bdf_, bar));
}

uint8_t* VfioDevice::Mapped(uint16_t bar, uint64_t offset, uint8_t width) const {
  for (const Mapping& m : mappings_) {
    if (m.bar == bar && m.range.Contains(offset, width)) return m.base + (offset - m.range.offset);
  }
  return nullptr;
}

absl::Status VfioDevice::RegionIo(bool write, uint16_t bar, uint64_t offset, void* data, uint8_t width) {
  if (uint8_t* p = Mapped(bar, offset, width)) {
    if (width == 4 && write) *reinterpret_cast<volatile uint32_t*>(p) = *static_cast<uint32_t*>(data);
    if (width == 4 && !write) *static_cast<uint32_t*>(data) = *reinterpret_cast<volatile uint32_t*>(p);
    if (width == 8 && write) *reinterpret_cast<volatile uint64_t*>(p) = *static_cast<uint64_t*>(data);
    if (width == 8 && !write) *static_cast<uint64_t*>(data) = *reinterpret_cast<volatile uint64_t*>(p);
    return absl::OkStatus();
  }
  const uint64_t off = regions_[bar].offset + offset;
  ssize_t n = write ? pwrite(device_fd_, data, width, off) : pread(device_fd_, data, width, off);
  if (n != width) return IoctlError(absl::StrFormat("BAR%d %s at 0x%x", bar, write ? "write" : "read", offset), bdf_);
  return absl::OkStatus();
}

absl::Status VfioDevice::BarAccess(bool write, uint16_t bar, uint64_t offset, void* data, uint8_t width) {
  absl::StatusOr<const VfioBar*> b = CheckAccess(bar, offset, width);
  if (!b.ok()) return b.status();
  for (const Range& h : (*b)->hidden) {
    if (!h.Overlaps(offset, width)) continue;
    if (!write) return absl::OkStatus();  // reads as 0
    return absl::PermissionDeniedError(
        absl::StrFormat("BAR%d 0x%x is the MSI-X table or PBA (the agent's)", bar, offset));
  }
  return RegionIo(write, bar, offset, data, width);
}

absl::StatusOr<uint32_t> VfioDevice::Read32(uint16_t bar, uint64_t offset) {
  uint32_t v = 0;
  if (absl::Status s = BarAccess(false, bar, offset, &v, 4); !s.ok()) return s;
  return v;
}

absl::StatusOr<uint64_t> VfioDevice::Read64(uint16_t bar, uint64_t offset) {
  uint64_t v = 0;
  if (absl::Status s = BarAccess(false, bar, offset, &v, 8); !s.ok()) return s;
  return v;
}

absl::Status VfioDevice::Write32(uint16_t bar, uint64_t offset, uint32_t value) {
  return BarAccess(true, bar, offset, &value, 4);
}

absl::Status VfioDevice::Write64(uint16_t bar, uint64_t offset, uint64_t value) {
  return BarAccess(true, bar, offset, &value, 8);
}

absl::Status VfioDevice::ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) {
  if (offset % 4 != 0 || len % 4 != 0) return absl::InvalidArgumentError("BAR reads are whole 32-bit registers");
  for (uint64_t i = 0; i < len; i += 4) {
    absl::StatusOr<uint32_t> v = Read32(bar, offset + i);
    if (!v.ok()) return v.status();
    std::memcpy(out + i, &*v, 4);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> VfioDevice::ReadConfig(uint16_t len) {
  std::vector<uint8_t> config(len);
  const Region& r = regions_[VFIO_PCI_CONFIG_REGION_INDEX];
  if (pread(device_fd_, config.data(), len, r.offset) != len) return IoctlError("reading config space", bdf_);
  return config;
}

absl::Status VfioDevice::TenantWriteConfig(uint16_t offset, uint8_t width, uint32_t value) {
  absl::StatusOr<std::vector<uint8_t>> config = ReadConfig(256);
  if (!config.ok()) return config.status();
  absl::StatusOr<uint32_t> filtered = FilterTenantConfigWrite(*config, offset, width, value);
  if (!filtered.ok()) return filtered.status();
  const uint64_t off = regions_[VFIO_PCI_CONFIG_REGION_INDEX].offset + offset;
  if (pwrite(device_fd_, &*filtered, width, off) != width) return IoctlError("config write", bdf_);
  return absl::OkStatus();
}

absl::Status VfioDevice::ValidateIova(uint64_t iova, uint64_t size) {
  if (size == 0 || iova % kPage != 0 || size % kPage != 0 || iova + size < iova) {
    return absl::InvalidArgumentError(absl::StrFormat("DMA window 0x%x+0x%x is not page-aligned", iova, size));
  }
  vfio_iommu_type1_info first = {};
  absl::StatusOr<std::vector<uint8_t>> buf = GetInfoWithCaps(container_fd_, VFIO_IOMMU_GET_INFO, first);
  if (!buf.ok()) return IoctlError("VFIO_IOMMU_GET_INFO", bdf_);
  auto* info = reinterpret_cast<const vfio_iommu_type1_info*>(buf->data());
  if ((info->flags & VFIO_IOMMU_INFO_CAPS) == 0) return absl::OkStatus();
  const auto* h = FindCap(*buf, info->cap_offset, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  if (h == nullptr) return absl::OkStatus();
  // The kernel chains capabilities at 4-byte offsets, and the ranges are
  // u64s: read them by copy, never through a misaligned struct pointer.
  const size_t at = static_cast<size_t>(reinterpret_cast<const uint8_t*>(h) - buf->data());
  constexpr size_t kNrOffset = offsetof(vfio_iommu_type1_info_cap_iova_range, nr_iovas);
  constexpr size_t kRangesOffset = offsetof(vfio_iommu_type1_info_cap_iova_range, iova_ranges);
  uint32_t nr = 0;
  if (at + kRangesOffset <= buf->size()) std::memcpy(&nr, buf->data() + at + kNrOffset, sizeof(nr));
  for (uint32_t i = 0; i < nr; ++i) {
    vfio_iova_range r = {};
    const size_t from = at + kRangesOffset + i * sizeof(r);
    if (from + sizeof(r) > buf->size()) break;
    std::memcpy(&r, buf->data() + from, sizeof(r));
    if (iova >= r.start && iova + size - 1 <= r.end) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("DMA window 0x%x+0x%x is outside the IOMMU's usable IOVA ranges", iova, size));
}

absl::Status VfioDevice::MapDma(void* host, uint64_t size, uint64_t iova) {
  if (reinterpret_cast<uintptr_t>(host) % kPage != 0) return absl::InvalidArgumentError("DMA memory is not page-aligned");
  if (absl::Status s = ValidateIova(iova, size); !s.ok()) return s;
  vfio_iommu_type1_dma_map map = {};
  map.argsz = sizeof(map);
  map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  map.vaddr = reinterpret_cast<uintptr_t>(host);
  map.iova = iova;
  map.size = size;
  if (ioctl(container_fd_, VFIO_IOMMU_MAP_DMA, &map) != 0) return IoctlError("VFIO_IOMMU_MAP_DMA", bdf_);
  std::lock_guard<std::mutex> lock(mu_);
  dma_maps_.push_back({iova, size});
  return absl::OkStatus();
}

absl::Status VfioDevice::UnmapDma(uint64_t iova, uint64_t size) {
  vfio_iommu_type1_dma_unmap unmap = {};
  unmap.argsz = sizeof(unmap);
  unmap.iova = iova;
  unmap.size = size;
  if (ioctl(container_fd_, VFIO_IOMMU_UNMAP_DMA, &unmap) != 0) return IoctlError("VFIO_IOMMU_UNMAP_DMA", bdf_);
  std::lock_guard<std::mutex> lock(mu_);
  dma_maps_.erase(std::remove(dma_maps_.begin(), dma_maps_.end(), std::make_pair(iova, size)), dma_maps_.end());
  return absl::OkStatus();
}

absl::StatusOr<int> VfioDevice::EnableInterrupts(int vectors) {
  std::lock_guard<std::mutex> lock(mu_);
  if (irq_kind_ != IrqKind::kNone) return absl::FailedPreconditionError("vfio: interrupts already routed");
  for (uint32_t index : {VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX}) {
    vfio_irq_info info = {};
    info.argsz = sizeof(info);
    info.index = index;
    if (ioctl(device_fd_, VFIO_DEVICE_GET_IRQ_INFO, &info) != 0 || info.count == 0) continue;
    int n = std::min<int>(vectors, static_cast<int>(info.count));
    for (int i = 0; i < n; ++i) irq_fds_.push_back(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    irq_kind_ = index == VFIO_PCI_MSIX_IRQ_INDEX ? IrqKind::kMsix : IrqKind::kMsi;
    if (absl::Status s = RouteInterrupts(); !s.ok()) {
      for (int fd : irq_fds_) close(fd);
      irq_fds_.clear();
      irq_kind_ = IrqKind::kNone;
      return s;
    }
    return n;
  }
  return absl::FailedPreconditionError(absl::StrCat("vfio: ", bdf_, " has neither MSI-X nor MSI"));
}

absl::Status VfioDevice::RouteInterrupts() {
  std::vector<uint8_t> buf(sizeof(vfio_irq_set) + sizeof(int32_t) * irq_fds_.size());
  auto* set = reinterpret_cast<vfio_irq_set*>(buf.data());
  set->argsz = buf.size();
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = irq_kind_ == IrqKind::kMsix ? VFIO_PCI_MSIX_IRQ_INDEX : VFIO_PCI_MSI_IRQ_INDEX;
  set->start = 0;
  set->count = irq_fds_.size();
  std::memcpy(set->data, irq_fds_.data(), sizeof(int32_t) * irq_fds_.size());
  if (ioctl(device_fd_, VFIO_DEVICE_SET_IRQS, set) != 0) return IoctlError("VFIO_DEVICE_SET_IRQS", bdf_);
  return absl::OkStatus();
}

void VfioDevice::DisableInterrupts() {
  std::lock_guard<std::mutex> lock(mu_);
  if (irq_kind_ == IrqKind::kNone) return;
  vfio_irq_set set = {};
  set.argsz = sizeof(set);
  set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
  set.index = irq_kind_ == IrqKind::kMsix ? VFIO_PCI_MSIX_IRQ_INDEX : VFIO_PCI_MSI_IRQ_INDEX;
  ioctl(device_fd_, VFIO_DEVICE_SET_IRQS, &set);
  for (int fd : irq_fds_) close(fd);
  irq_fds_.clear();
  irq_kind_ = IrqKind::kNone;
}

std::vector<uint16_t> VfioDevice::TakeInterrupts() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint16_t> fired;
  for (size_t i = 0; i < irq_fds_.size(); ++i) {
    uint64_t count = 0;
    if (read(irq_fds_[i], &count, sizeof(count)) == sizeof(count) && count > 0) fired.push_back(static_cast<uint16_t>(i));
  }
  return fired;
}

absl::Status VfioDevice::Reset() {
  if (!can_reset_) return absl::FailedPreconditionError(absl::StrCat("vfio: ", bdf_, " has no reset"));
  if (ioctl(device_fd_, VFIO_DEVICE_RESET) != 0) return IoctlError("VFIO_DEVICE_RESET", bdf_);
  return EnableBusMaster();
}

}  // namespace rpci::agent::vfio
