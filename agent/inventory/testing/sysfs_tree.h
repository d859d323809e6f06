#ifndef RPCI_AGENT_INVENTORY_TESTING_SYSFS_TREE_H_
#define RPCI_AGENT_INVENTORY_TESTING_SYSFS_TREE_H_

#include <cstdint>
#include <string>

namespace rpci::agent::testing {

// Attributes of a synthetic PCI function; empty strings leave a file out.
struct FakeFunction {
  std::string bdf;
  // Path under devices/ of the parent, e.g. "pci0000:00/0000:00:01.0".
  std::string parent = "pci0000:00";
  std::string vendor = "0x8086";
  std::string device = "0x1234";
  std::string subsystem_vendor = "0x0000";
  std::string subsystem_device = "0x0000";
  std::string class_code = "0x020000";
  std::string revision = "0x01";
  std::string numa_node = "0";
  std::string iommu_group = "7";  // "" = no link
  std::string driver;             // "" = unbound
  std::string resource =
      "0x00000000f0000000 0x00000000f0ffffff 0x0000000000040200\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
  std::string current_link_speed = "8.0 GT/s PCIe";
  std::string current_link_width = "8";
  std::string max_link_speed = "16.0 GT/s PCIe";
  std::string max_link_width = "16";
};

// A function at `bdf` under `parent` (a path under devices/) on NUMA node
// `numa_node`, the other attributes FakeFunction's defaults.
FakeFunction FunctionAt(const std::string& bdf, const std::string& parent = "pci0000:00",
                        const std::string& numa_node = "0");
// A PCI bridge (class 0x060400, bound to pcieport) at `bdf` under `parent`.
FakeFunction BridgeAt(const std::string& bdf, const std::string& parent);

// A sysfs-shaped tree in a fresh temporary directory, removed on
// destruction: devices/pci*/..., bus/pci/devices/<bdf> links, kernel/
// iommu_groups, bus/pci/drivers, class/infiniband. Aborts the test binary on
// filesystem errors (they are bugs in the test, not the code under test).
class SysfsTree {
 public:
  SysfsTree();
  ~SysfsTree();
  SysfsTree(const SysfsTree&) = delete;
  SysfsTree& operator=(const SysfsTree&) = delete;

  const std::string& root() const { return root_; }

  // Creates the function's directory and its bus link; returns the
  // directory's path relative to root.
  std::string AddFunction(const FakeFunction& fn);

  // An RDMA device class/infiniband/<name> whose `device` link points at the
  // function `bdf` (which need not exist), with one port.
  void AddRdmaDevice(const std::string& name, const std::string& bdf,
                     const std::string& port_state = "4: ACTIVE",
                     const std::string& link_layer = "Ethernet");

  // A software RDMA device (rxe) on network device `netdev`: as AddRdmaDevice
  // but with no PCI function behind it, its `parent` file naming the netdev.
  void AddSoftRdmaDevice(const std::string& name, const std::string& netdev);

  // Paths relative to root; parent directories are created.
  void WriteFile(const std::string& rel, const std::string& content);
  void Symlink(const std::string& target, const std::string& rel);
  void MakeDir(const std::string& rel);
  void Remove(const std::string& rel);

 private:
  std::string root_;
};

// Root port 00:01.0 -> switch upstream port 01:00.0 -> downstream ports
// 02:00.0 (GPU 03:00.0, 10de:20b0, numa 1, iommu 42, vfio-pci, four BARs) and
// 02:01.0 (Mellanox NIC 04:00.0, mlx5_core, numa 0); an NVMe drive 00:02.0
// directly on the root complex (numa 0).
void AddSwitchTopology(SysfsTree& tree);

}  // namespace rpci::agent::testing

#endif  // RPCI_AGENT_INVENTORY_TESTING_SYSFS_TREE_H_
