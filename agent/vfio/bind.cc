#include "agent/vfio/bind.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "agent/inventory/sysfs_util.h"

namespace rpci::agent::vfio {
namespace {

constexpr char kVfioPci[] = "vfio-pci";

absl::Status WriteAttr(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  if (!out) return absl::UnavailableError(absl::StrCat(path, ": ", std::strerror(errno)));
  out << value;
  out.flush();
  if (!out) return absl::UnavailableError(absl::StrCat("writing \"", value, "\" to ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

}  // namespace

std::string BoundDriver(const std::string& sysfs_root, const std::string& bdf) {
  sysfs::Link link = sysfs::ReadLink(absl::StrCat(sysfs_root, "/bus/pci/devices/", bdf, "/driver"));
  return link.state == sysfs::LinkState::kAbsent ? "" : link.target_name;
}

absl::Status BindToVfioPci(const BindOptions& o) {
  const std::string dev = absl::StrCat(o.sysfs_root, "/bus/pci/devices/", o.bdf);
  if (!sysfs::Exists(dev)) return absl::NotFoundError(absl::StrCat("vfio: no PCI function ", o.bdf, " (", dev, ")"));
  std::string driver = BoundDriver(o.sysfs_root, o.bdf);
  if (driver == kVfioPci) return absl::OkStatus();
  if (!sysfs::Exists(absl::StrCat(o.sysfs_root, "/bus/pci/drivers/", kVfioPci))) {
    return absl::FailedPreconditionError(
        absl::StrCat("vfio: ", o.bdf, ": the vfio-pci driver is not loaded (modprobe vfio-pci)"));
  }
  if (!driver.empty() && !o.allow_unbind) {
    return absl::FailedPreconditionError(absl::StrCat("vfio: ", o.bdf, " is bound to host driver \"", driver,
                                                      "\"; the export policy does not allow unbinding it"));
  }
  if (absl::Status s = WriteAttr(dev + "/driver_override", kVfioPci); !s.ok()) return s;
  if (!driver.empty()) {
    if (absl::Status s = WriteAttr(dev + "/driver/unbind", o.bdf); !s.ok()) return s;
  }
  if (absl::Status s = WriteAttr(absl::StrCat(o.sysfs_root, "/bus/pci/drivers_probe"), o.bdf); !s.ok()) return s;
  driver = BoundDriver(o.sysfs_root, o.bdf);
  if (driver != kVfioPci) {
    return absl::FailedPreconditionError(absl::StrCat("vfio: ", o.bdf, " did not bind to vfio-pci (driver now \"",
                                                      driver, "\")"));
  }
  return absl::OkStatus();
}

}  // namespace rpci::agent::vfio
