#include "agent/inventory/testing/sysfs_tree.h"

#include "common/testing/temp_dir.h"

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace rpci::agent::testing {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void Die(const std::string& what, const std::error_code& ec) {
  std::fprintf(stderr, "SysfsTree: %s: %s\n", what.c_str(), ec.message().c_str());
  std::abort();
}

}  // namespace

SysfsTree::SysfsTree() {
  root_ = ::rpci::testing::MakeTempDir("sysfs");
  MakeDir("bus/pci/devices");
  MakeDir("devices/pci0000:00");
}

SysfsTree::~SysfsTree() {
  std::error_code ec;
  fs::permissions(root_, fs::perms::owner_all, fs::perm_options::add, ec);
  fs::remove_all(root_, ec);
}

void SysfsTree::MakeDir(const std::string& rel) {
  std::error_code ec;
  fs::create_directories(root_ + "/" + rel, ec);
  if (ec) Die("mkdir " + rel, ec);
}

void SysfsTree::WriteFile(const std::string& rel, const std::string& content) {
  fs::path p = root_ + "/" + rel;
  MakeDir(fs::path(rel).parent_path().string());
  std::ofstream out(p, std::ios::trunc);
  out << content;
  if (!out) Die("write " + rel, std::error_code(errno, std::generic_category()));
}

void SysfsTree::Symlink(const std::string& target, const std::string& rel) {
  MakeDir(fs::path(rel).parent_path().string());
  std::error_code ec;
  fs::remove(root_ + "/" + rel, ec);
  fs::create_symlink(target, root_ + "/" + rel, ec);
  if (ec) Die("symlink " + rel, ec);
}

void SysfsTree::Remove(const std::string& rel) {
  std::error_code ec;
  fs::remove_all(root_ + "/" + rel, ec);
  if (ec) Die("remove " + rel, ec);
}

std::string SysfsTree::AddFunction(const FakeFunction& fn) {
  std::string dir = "devices/" + fn.parent + "/" + fn.bdf;
  MakeDir(dir);
  auto put = [&](const char* name, const std::string& value) {
    if (!value.empty()) WriteFile(dir + "/" + name, value + (value.back() == '\n' ? "" : "\n"));
  };
  put("vendor", fn.vendor);
  put("device", fn.device);
  put("subsystem_vendor", fn.subsystem_vendor);
  put("subsystem_device", fn.subsystem_device);
  put("class", fn.class_code);
  put("revision", fn.revision);
  put("numa_node", fn.numa_node);
  put("resource", fn.resource);
  put("current_link_speed", fn.current_link_speed);
  put("current_link_width", fn.current_link_width);
  put("max_link_speed", fn.max_link_speed);
  put("max_link_width", fn.max_link_width);
  // Links are relative, as in the kernel's sysfs, so the tree is relocatable.
  std::string to_root;
  for (long i = 0; i <= std::count(dir.begin(), dir.end(), '/'); ++i) to_root += "../";
  if (!fn.iommu_group.empty()) {
    MakeDir("kernel/iommu_groups/" + fn.iommu_group);
    Symlink(to_root + "kernel/iommu_groups/" + fn.iommu_group, dir + "/iommu_group");
  }
  if (!fn.driver.empty()) {
    MakeDir("bus/pci/drivers/" + fn.driver);
    Symlink(to_root + "bus/pci/drivers/" + fn.driver, dir + "/driver");
  }
  Symlink("../../../" + dir, "bus/pci/devices/" + fn.bdf);
  return dir;
}

void SysfsTree::AddRdmaDevice(const std::string& name, const std::string& bdf,
                              const std::string& port_state, const std::string& link_layer) {
  std::string dir = "devices/virtual/infiniband/" + name;
  MakeDir(dir);
  WriteFile(dir + "/node_guid", "0002:c903:0042:1234\n");
  WriteFile(dir + "/ports/1/state", port_state + "\n");
  WriteFile(dir + "/ports/1/link_layer", link_layer + "\n");
  WriteFile(dir + "/ports/1/gids/0", "fe80:0000:0000:0000:0202:c9ff:fe42:1234\n");
  WriteFile(dir + "/ports/1/gids/1", "0000:0000:0000:0000:0000:0000:0000:0000\n");
  Symlink("../../../../bus/pci/devices/" + bdf, dir + "/device");
  Symlink("../../" + dir, "class/infiniband/" + name);
}

void SysfsTree::AddSoftRdmaDevice(const std::string& name, const std::string& netdev) {
  AddRdmaDevice(name, "0000:00:00.0");
  Remove("devices/virtual/infiniband/" + name + "/device");
  WriteFile("devices/virtual/infiniband/" + name + "/parent", netdev + "\n");
}

FakeFunction FunctionAt(const std::string& bdf, const std::string& parent, const std::string& numa_node) {
  FakeFunction f;
  f.bdf = bdf;
  f.parent = parent;
  f.numa_node = numa_node;
  return f;
}

FakeFunction BridgeAt(const std::string& bdf, const std::string& parent) {
  FakeFunction f = FunctionAt(bdf, parent);
  f.class_code = "0x060400";
  f.driver = "pcieport";
  return f;
}

// Root port 00:01.0 -> switch upstream 01:00.0 -> downstream 02:00.0 (GPU
// 03:00.0) and 02:01.0 (NIC 04:00.0); an unrelated NVMe drive at 00:02.0.
void AddSwitchTopology(SysfsTree& tree) {
  tree.AddFunction(BridgeAt("0000:00:01.0", "pci0000:00"));
  tree.AddFunction(BridgeAt("0000:01:00.0", "pci0000:00/0000:00:01.0"));
  tree.AddFunction(BridgeAt("0000:02:00.0", "pci0000:00/0000:00:01.0/0000:01:00.0"));
  tree.AddFunction(BridgeAt("0000:02:01.0", "pci0000:00/0000:00:01.0/0000:01:00.0"));
  FakeFunction gpu = FunctionAt("0000:03:00.0", "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:00.0", "1");
  gpu.vendor = "0x10de";
  gpu.device = "0x20b0";
  gpu.subsystem_vendor = "0x10de";
  gpu.subsystem_device = "0x134f";
  gpu.class_code = "0x030200";
  gpu.revision = "0xa1";
  gpu.iommu_group = "42";
  gpu.driver = "vfio-pci";
  gpu.resource =
      "0x00000000fa000000 0x00000000faffffff 0x0000000000040200\n"
      "0x0000038000000000 0x0000038fffffffff 0x000000000014220c\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000039000000000 0x0000039001ffffff 0x000000000014220c\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x000000000000e000 0x000000000000e07f 0x0000000000040101\n"
      "0x00000000fb000000 0x00000000fb07ffff 0x0000000000046200\n";
  tree.AddFunction(gpu);
  FakeFunction nic = FunctionAt("0000:04:00.0", "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:01.0");
  nic.vendor = "0x15b3";
  nic.device = "0x101b";
  nic.driver = "mlx5_core";
  tree.AddFunction(nic);
  FakeFunction nvme = FunctionAt("0000:00:02.0");
  nvme.class_code = "0x010802";
  tree.AddFunction(nvme);
}

}  // namespace rpci::agent::testing
