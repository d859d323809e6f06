#include "agent/inventory/pci_inventory.h"

#include <algorithm>
#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/inventory/pci_address.h"
#include "agent/inventory/sysfs_util.h"

namespace rpci::agent {
namespace {

using rpci::v1::PcieFunction;

// Resource flag bits from include/linux/ioport.h, as sysfs `resource` shows them.
constexpr uint64_t kIoResourceIo = 0x00000100;
constexpr uint64_t kIoResourceMem = 0x00000200;
constexpr uint64_t kIoResourcePrefetch = 0x00002000;
constexpr uint64_t kIoResourceMem64 = 0x00100000;
// Lines 0-5 of `resource` are the standard BARs; 6 is the ROM, then bridge windows.
constexpr int kNumBars = 6;

// Collects the problems of one function's read.
class Reader {
 public:
  Reader(std::string dir, PcieFunction* fn) : dir_(std::move(dir)), fn_(fn) {}

  void Problem(absl::string_view field, absl::string_view message) {
    auto* p = fn_->add_problems();
    p->set_field(std::string(field));
    p->set_message(std::string(message));
  }

  std::string Path(absl::string_view attr) const { return absl::StrCat(dir_, "/", attr); }

  // A hex attribute into the function's field (`set`); on failure the field
  // is 0, the problem recorded, and the answer false.
  bool Hex(absl::string_view attr, absl::string_view field, uint64_t max, void (PcieFunction::*set)(uint32_t)) {
    (fn_->*set)(0);
    absl::StatusOr<std::string> text = sysfs::ReadAttr(Path(attr));
    if (!text.ok()) {
      Problem(field, text.status().message());
      return false;
    }
    absl::StatusOr<uint64_t> value = sysfs::ParseHex(*text, max);
    if (!value.ok()) {
      Problem(field, absl::StrCat(attr, ": ", value.status().message()));
      return false;
    }
    (fn_->*set)(static_cast<uint32_t>(*value));
    return true;
  }

  const std::string& dir() const { return dir_; }
  PcieFunction* fn() { return fn_; }

 private:
  std::string dir_;
  PcieFunction* fn_;
};

void ReadIds(Reader& r, PciNames* names) {
  PcieFunction* fn = r.fn();
  bool have_vendor = r.Hex("vendor", "vendor_id", 0xffff, &PcieFunction::set_vendor_id);
  bool have_device = r.Hex("device", "device_id", 0xffff, &PcieFunction::set_device_id);
  bool have_svendor = r.Hex("subsystem_vendor", "subsystem_vendor_id", 0xffff, &PcieFunction::set_subsystem_vendor_id);
  bool have_sdevice = r.Hex("subsystem_device", "subsystem_device_id", 0xffff, &PcieFunction::set_subsystem_device_id);
  bool have_class = r.Hex("class", "class_code", 0xffffff, &PcieFunction::set_class_code);
  r.Hex("revision", "revision", 0xff, &PcieFunction::set_revision);

  if (names == nullptr) return;
  if (have_vendor) fn->set_vendor_name(names->Vendor(fn->vendor_id()));
  if (have_vendor && have_device) {
    fn->set_device_name(names->Device(fn->vendor_id(), fn->device_id()));
  }
  if (have_class) fn->set_class_name(names->Class(fn->class_code()));
  // lspci names a subsystem only when its vendor id is set (not 0, not ffff).
  if (have_svendor && fn->subsystem_vendor_id() != 0 && fn->subsystem_vendor_id() != 0xffff) {
    fn->set_subsystem_vendor_name(names->SubsystemVendor(fn->subsystem_vendor_id()));
    if (have_vendor && have_device && have_sdevice) {
      fn->set_subsystem_name(names->Subsystem(fn->vendor_id(), fn->device_id(),
                                              fn->subsystem_vendor_id(),
                                              fn->subsystem_device_id()));
    }
  }
}

void ReadNumaNode(Reader& r) {
  r.fn()->set_numa_node(-1);
  absl::StatusOr<std::string> text = sysfs::ReadAttr(r.Path("numa_node"));
  if (!text.ok()) {
    r.Problem("numa_node", text.status().message());
    return;
  }
  absl::StatusOr<int64_t> node = sysfs::ParseDecimal(*text);
  if (!node.ok() || *node < -1 || *node > 65535) {
    r.Problem("numa_node", absl::StrCat("numa_node: malformed value \"", *text, "\""));
    return;
  }
  if (*node == -1) {
    r.Problem("numa_node", "kernel reports -1: no NUMA affinity known");
    return;
  }
  r.fn()->set_numa_node(static_cast<int32_t>(*node));
}

void ReadIommuGroup(Reader& r) {
  r.fn()->set_iommu_group(-1);
  sysfs::Link link = sysfs::ReadLink(r.Path("iommu_group"));
  if (link.state == sysfs::LinkState::kAbsent) {
    r.Problem("iommu_group", "no iommu_group link (IOMMU off or device not isolated)");
    return;
  }
  if (link.state == sysfs::LinkState::kBroken) {
    r.Problem("iommu_group", absl::StrCat("iommu_group: broken symlink to ", link.target));
  }
  absl::StatusOr<int64_t> group = sysfs::ParseDecimal(link.target_name);
  if (!group.ok() || *group < 0 || *group > INT32_MAX) {
    r.Problem("iommu_group", absl::StrCat("iommu_group: link target \"", link.target,
                                          "\" does not end in a group number"));
    return;
  }
  r.fn()->set_iommu_group(static_cast<int32_t>(*group));
}

void ReadDriver(Reader& r) {
  sysfs::Link link = sysfs::ReadLink(r.Path("driver"));
  if (link.state == sysfs::LinkState::kAbsent) return;  // unbound
  if (link.state == sysfs::LinkState::kBroken) {
    r.Problem("driver", absl::StrCat("driver: broken symlink to ", link.target));
  }
  r.fn()->set_driver(link.target_name);
}

void ReadBars(Reader& r) {
  absl::StatusOr<std::string> text = sysfs::ReadAttr(r.Path("resource"));
  if (!text.ok()) {
    r.Problem("bars", text.status().message());
    return;
  }
  std::vector<absl::string_view> lines = absl::StrSplit(*text, '\n');
  for (int i = 0; i < kNumBars && i < static_cast<int>(lines.size()); ++i) {
    std::vector<absl::string_view> cols =
        absl::StrSplit(lines[i], absl::ByAnyChar(" \t"), absl::SkipEmpty());
    absl::StatusOr<uint64_t> start, end, flags;
    if (cols.size() == 3) {
      start = sysfs::ParseHex(cols[0], UINT64_MAX);
      end = sysfs::ParseHex(cols[1], UINT64_MAX);
      flags = sysfs::ParseHex(cols[2], UINT64_MAX);
    }
    if (cols.size() != 3 || !start.ok() || !end.ok() || !flags.ok()) {
      r.Problem(absl::StrCat("bars[", i, "]"),
                absl::StrCat("resource line ", i, ": malformed \"", lines[i],
                             "\" (want \"start end flags\" in hex)"));
      continue;
    }
    if (*start == 0 && *end == 0) continue;  // unused (or upper half of a 64-bit BAR)
    if (*end < *start) {
      r.Problem(absl::StrCat("bars[", i, "]"),
                absl::StrCat("resource line ", i, ": end below start in \"", lines[i], "\""));
      continue;
    }
    auto* bar = r.fn()->add_bars();
    bar->set_index(i);
    bar->set_start(*start);
    bar->set_size(*end - *start + 1);
    bar->set_is_io((*flags & kIoResourceIo) != 0 && (*flags & kIoResourceMem) == 0);
    bar->set_is_64bit((*flags & kIoResourceMem64) != 0);
    bar->set_prefetchable((*flags & kIoResourcePrefetch) != 0);
  }
}

// A link speed ("8.0 GT/s PCIe"); kept as sysfs says it, with a problem
// when it is not a rate (e.g. "Unknown" for a link that is down).
void ReadSpeed(Reader& r, const char* attr, const char* field, std::string* out) {
  absl::StatusOr<std::string> text = sysfs::ReadAttr(r.Path(attr));
  if (absl::IsNotFound(text.status())) return;
  if (!text.ok()) {
    r.Problem(field, text.status().message());
    return;
  }
  *out = *text;
  if (text->find("GT/s") == std::string::npos) {
    r.Problem(field, absl::StrCat(attr, ": speed \"", *text, "\" is not a known rate"));
  }
}

// An optional decimal attribute (a `what`) from 0 to `max` into *out; an
// absent one leaves *out, an unreadable or malformed one is a problem.
void ReadOptionalDecimal(Reader& r, const char* attr, const char* field, const char* what, int64_t max,
                         uint32_t* out) {
  absl::StatusOr<std::string> text = sysfs::ReadAttr(r.Path(attr));
  if (absl::IsNotFound(text.status())) return;
  if (!text.ok()) {
    r.Problem(field, text.status().message());
    return;
  }
  absl::StatusOr<int64_t> n = sysfs::ParseDecimal(*text);
  if (!n.ok() || *n < 0 || *n > max) {
    r.Problem(field, absl::StrCat(attr, ": malformed ", what, " \"", *text, "\""));
    return;
  }
  *out = static_cast<uint32_t>(*n);
}

void ReadWidth(Reader& r, const char* attr, const char* field, uint32_t* out) {
  ReadOptionalDecimal(r, attr, field, "width", 32, out);
}

// Link attributes exist only for functions with a PCIe capability; their
// absence is not a problem, but an unreadable or odd value is.
void ReadLinkAttrs(Reader& r) {
  std::string current_speed, max_speed;
  uint32_t current_width = 0, max_width = 0;
  ReadSpeed(r, "current_link_speed", "link.current_speed", &current_speed);
  ReadSpeed(r, "max_link_speed", "link.max_speed", &max_speed);
  ReadWidth(r, "current_link_width", "link.current_width", &current_width);
  ReadWidth(r, "max_link_width", "link.max_width", &max_width);
  if (current_speed.empty() && max_speed.empty() && current_width == 0 && max_width == 0) return;
  auto* link = r.fn()->mutable_link();
  link->set_current_speed(current_speed);
  link->set_max_speed(max_speed);
  link->set_current_width(current_width);
  link->set_max_width(max_width);
}

// A link that names a PCI function (physfn, virtfnN); empty on failure.
std::string ReadFunctionLink(Reader& r, const std::string& attr, absl::string_view field) {
  sysfs::Link link = sysfs::ReadLink(r.Path(attr));
  if (link.state == sysfs::LinkState::kAbsent) return "";
  if (link.state == sysfs::LinkState::kBroken) {
    r.Problem(field, absl::StrCat(attr, ": broken symlink to ", link.target));
  }
  absl::StatusOr<PciAddress> addr = PciAddress::Parse(link.target_name);
  if (!addr.ok()) {
    r.Problem(field, absl::StrCat(attr, ": ", addr.status().message()));
    return "";
  }
  return addr->ToString();
}

void ReadSriov(Reader& r, const std::vector<std::string>& entries) {
  auto* sriov = r.fn()->mutable_sriov();
  // Absent on functions that are not SR-IOV capable.
  uint32_t total_vfs = 0, num_vfs = 0;
  ReadOptionalDecimal(r, "sriov_totalvfs", "sriov.total_vfs", "count", 65535, &total_vfs);
  ReadOptionalDecimal(r, "sriov_numvfs", "sriov.num_vfs", "count", 65535, &num_vfs);
  sriov->set_total_vfs(total_vfs);
  sriov->set_num_vfs(num_vfs);
  sriov->set_physfn(ReadFunctionLink(r, "physfn", "sriov.physfn"));
  // virtfnN links, in N order (virtfn10 after virtfn9).
  std::vector<std::pair<int64_t, std::string>> vfs;
  for (const std::string& e : entries) {
    if (e.rfind("virtfn", 0) != 0) continue;
    absl::StatusOr<int64_t> n = sysfs::ParseDecimal(absl::string_view(e).substr(6));
    if (!n.ok()) continue;
    vfs.emplace_back(*n, e);
  }
  std::sort(vfs.begin(), vfs.end());
  for (const auto& [n, attr] : vfs) {
    std::string bdf = ReadFunctionLink(r, attr, "sriov.virtfns");
    if (!bdf.empty()) sriov->add_virtfns(bdf);
  }
}

// The bridges above the function, from its canonical sysfs path
// (/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/<self>), nearest first.
void ReadParentBridges(Reader& r, const std::string& self) {
  absl::StatusOr<std::string> real = sysfs::RealPath(r.dir());
  if (!real.ok()) {
    r.Problem("parent_bridges", real.status().message());
    return;
  }
  std::vector<absl::string_view> parts = absl::StrSplit(*real, '/', absl::SkipEmpty());
  std::vector<std::string> bridges;
  for (absl::string_view part : parts) {
    absl::StatusOr<PciAddress> addr = PciAddress::Parse(part);
    // Only full canonical addresses; "pci0000:00" (the host bridge) is not one.
    if (!addr.ok() || addr->ToString() != part) continue;
    if (part == self) break;
    bridges.push_back(addr->ToString());
  }
  for (auto it = bridges.rbegin(); it != bridges.rend(); ++it) r.fn()->add_parent_bridges(*it);
}

}  // namespace

PcieFunction ReadPciFunction(const std::string& sysfs_root, const std::string& bdf,
                             PciNames* names) {
  PcieFunction fn;
  fn.set_bdf(bdf);
  Reader r(absl::StrCat(sysfs_root, "/bus/pci/devices/", bdf), &fn);
  sysfs::Link self = sysfs::ReadLink(r.dir());
  if (self.state == sysfs::LinkState::kBroken) {
    fn.set_numa_node(-1);
    fn.set_iommu_group(-1);
    r.Problem("bdf", absl::StrCat(r.dir(), ": broken symlink to ", self.target,
                                  "; no attributes readable"));
    return fn;
  }
  absl::StatusOr<std::vector<std::string>> entries = sysfs::ListDir(r.dir());
  if (!entries.ok()) {
    r.Problem("bdf", entries.status().message());
    entries = std::vector<std::string>();
  }
  ReadIds(r, names);
  ReadNumaNode(r);
  ReadIommuGroup(r);
  ReadDriver(r);
  ReadBars(r);
  ReadLinkAttrs(r);
  ReadSriov(r, *entries);
  ReadParentBridges(r, bdf);
  if (fn.sriov().ByteSizeLong() == 0) fn.clear_sriov();
  return fn;
}

absl::StatusOr<std::vector<PcieFunction>> ScanPciFunctions(const std::string& sysfs_root,
                                                           PciNames* names) {
  std::string dir = absl::StrCat(sysfs_root, "/bus/pci/devices");
  absl::StatusOr<std::vector<std::string>> entries = sysfs::ListDir(dir);
  if (!entries.ok()) {
    return absl::Status(entries.status().code(),
                        absl::StrCat("PCI inventory: ", entries.status().message()));
  }
  std::vector<std::pair<PciAddress, std::string>> addrs;
  for (const std::string& e : *entries) {
    absl::StatusOr<PciAddress> addr = PciAddress::Parse(e);
    if (addr.ok()) addrs.emplace_back(*addr, e);
  }
  std::sort(addrs.begin(), addrs.end());
  std::vector<PcieFunction> out;
  out.reserve(addrs.size());
  for (const auto& [addr, name] : addrs) {
    PcieFunction fn = ReadPciFunction(sysfs_root, name, names);
    fn.set_bdf(addr.ToString());
    out.push_back(std::move(fn));
  }
  return out;
}

}  // namespace rpci::agent
