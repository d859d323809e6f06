#include "agent/backends/sysfs_bar_backend.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>

#include "absl/strings/str_cat.h"
#include "agent/backends/bar_access.h"

namespace rpci::agent {
namespace {

constexpr uint64_t kIoResource = 0x100;  // IORESOURCE_IO in `resource` flags
constexpr int kMaxBars = 6;

std::string ErrnoText(int err) { return std::strerror(err); }

// Flags of each BAR from the `resource` file ("start end flags" per line);
// empty when the file is missing or unreadable.
std::vector<uint64_t> ResourceFlags(const std::string& device_dir) {
  std::vector<uint64_t> flags;
  std::ifstream in(device_dir + "/resource");
  std::string start, end, flag;
  while (in >> start >> end >> flag) flags.push_back(std::strtoull(flag.c_str(), nullptr, 16));
  return flags;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SysfsBarBackend>> SysfsBarBackend::Open(const SysfsBarOptions& options) {
  static const std::regex kBdf("[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\\.[0-7]");
  if (!std::regex_match(options.bdf, kBdf)) {
    return absl::InvalidArgumentError(absl::StrCat("sysfs-bar: \"", options.bdf, "\" is not a PCI address dddd:bb:dd.f"));
  }
  const std::string name = absl::StrCat("device ", options.bdf);
  if (!options.allow) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, ": the sysfs-bar backend is disabled; the operator must opt in (backends.sysfs_bar.allow)"));
  }
  const std::string dir = absl::StrCat(options.sysfs_root, "/bus/pci/devices/", options.bdf);
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(name, ": ", dir, ": ", ErrnoText(errno)));
  }
  const std::string driver_link = dir + "/driver";
  if (lstat(driver_link.c_str(), &st) == 0) {
    char target[4096] = {0};
    ssize_t n = readlink(driver_link.c_str(), target, sizeof(target) - 1);
    std::string driver = n > 0 ? std::string(target, n) : "?";
    driver = driver.substr(driver.find_last_of('/') + 1);
    return absl::FailedPreconditionError(absl::StrCat(name, ": bound to host driver \"", driver,
                                                      "\"; unbind it before exporting its BARs"));
  }

  std::unique_ptr<SysfsBarBackend> backend(new SysfsBarBackend());
  backend->dir_ = dir;
  const std::vector<uint64_t> flags = ResourceFlags(dir);
  for (int i = 0; i < kMaxBars; ++i) {
    if (i < static_cast<int>(flags.size()) && (flags[i] & kIoResource)) continue;  // I/O ports: not mappable
    const std::string path = absl::StrCat(dir, "/resource", i);
    int fd = open(path.c_str(), O_RDWR | O_SYNC | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      return absl::PermissionDeniedError(absl::StrCat(name, ": ", path, ": ", ErrnoText(errno)));
    }
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
      close(fd);
      continue;
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    void* map = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int err = errno;
    close(fd);  // the mapping keeps the BAR
    if (map == MAP_FAILED) {
      return absl::UnavailableError(absl::StrCat(name, ": mmap ", path, ": ", ErrnoText(err)));
    }
    backend->bars_.push_back({static_cast<uint16_t>(i), size, true});
    backend->maps_.push_back(static_cast<uint8_t*>(map));
  }
  if (backend->bars_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(name, ": no memory BAR to map"));
  }
  return backend;
}

SysfsBarBackend::~SysfsBarBackend() {
  for (size_t i = 0; i < bars_.size(); ++i) munmap(maps_[i], bars_[i].size);
}

absl::Status SysfsBarBackend::WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  if (auto b = CheckRegisterWrite(bars_, bar, offset, width, value); !b.ok()) return b.status();
  for (size_t i = 0; i < bars_.size(); ++i) {
    if (bars_[i].index != bar) continue;
    if (width == 4) {
      *reinterpret_cast<volatile uint32_t*>(maps_[i] + offset) = static_cast<uint32_t>(value);
    } else {
      *reinterpret_cast<volatile uint64_t*>(maps_[i] + offset) = value;
    }
  }
  return absl::OkStatus();
}

absl::Status SysfsBarBackend::ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) {
  if (auto b = CheckBarRead(bars_, bar, offset, len); !b.ok()) return b.status();
  for (size_t i = 0; i < bars_.size(); ++i) {
    if (bars_[i].index != bar) continue;
    for (uint64_t at = 0; at < len; at += 4) {
      const uint32_t word = *reinterpret_cast<volatile uint32_t*>(maps_[i] + offset + at);
      std::memcpy(out + at, &word, 4);
    }
  }
  return absl::OkStatus();
}

absl::Status SysfsBarBackend::Reset() {
  std::fill(local_dma_.begin(), local_dma_.end(), 0);
  const std::string path = dir_ + "/reset";
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir_, ": no function reset (", path, ": ", ErrnoText(errno), "); the device is not clean"));
  }
  const bool wrote = ::write(fd, "1", 1) == 1;
  const int err = errno;
  close(fd);
  if (!wrote) return absl::UnavailableError(absl::StrCat(dir_, ": function reset failed: ", ErrnoText(err)));
  return absl::OkStatus();
}

}  // namespace rpci::agent
