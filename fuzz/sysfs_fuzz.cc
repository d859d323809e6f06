// Sysfs attribute files of a PCIe function as the agent's inventory reads
// them. The input is a list of files:
//   @resource
//   0x00000000fb000000 0x00000000fbffffff 0x0000000000040200
//   @numa_node
//   0
// written into a temporary function directory (only the attribute names
// below; anything else is ignored) that ReadPciFunction then reads. The first
// line also goes through the pure parsers (PCI address, hex, decimal).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "agent/inventory/pci_address.h"
#include "agent/inventory/pci_inventory.h"
#include "agent/inventory/sysfs_util.h"
#include "common/testing/temp_dir.h"

namespace {

constexpr const char* kAttrs[] = {
    "vendor", "device", "class", "subsystem_vendor", "subsystem_device", "revision",
    "numa_node", "resource", "current_link_speed", "current_link_width", "max_link_speed",
    "max_link_width", "sriov_totalvfs", "sriov_numvfs", "iommu_group",
};
constexpr char kBdf[] = "0000:3b:00.0";

const std::string& Root() {
  static const std::string root = [] {
    std::string dir = rpci::testing::MakeTempDir("rpci-sysfs-fuzz");
    std::string devices = dir + "/bus/pci/devices/";
    for (const std::string& d : {dir + "/bus", dir + "/bus/pci", devices, devices + kBdf}) {
      if (mkdir(d.c_str(), 0755) != 0) std::abort();
    }
    return dir;
  }();
  return root;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::string first = text.substr(0, text.find('\n'));
  if (absl::StatusOr<rpci::agent::PciAddress> a = rpci::agent::PciAddress::Parse(first); a.ok()) {
    absl::StatusOr<rpci::agent::PciAddress> again = rpci::agent::PciAddress::Parse(a->ToString());
    if (!again.ok() || again->ToString() != a->ToString()) std::abort();
  }
  (void)rpci::agent::sysfs::ParseHex(first, 0xffffffffu);
  (void)rpci::agent::sysfs::ParseDecimal(first);

  std::map<std::string, std::string> files;
  std::string* current = nullptr;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty() && line[0] == '@') {
      current = &files[std::string(line.substr(1))];
    } else if (current != nullptr) {
      current->append(line.data(), line.size());
      current->push_back('\n');
    }
  }
  const std::string dir = Root() + "/bus/pci/devices/" + kBdf + "/";
  for (const char* attr : kAttrs) {
    const std::string path = dir + attr;
    auto it = files.find(attr);
    if (it == files.end()) {
      unlink(path.c_str());
      continue;
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << it->second;
  }
  (void)rpci::agent::ReadPciFunction(Root(), kBdf, nullptr);
  return 0;
}
