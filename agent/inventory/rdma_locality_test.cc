#include <sstream>
#include <string>
#include <vector>

#include "agent/inventory/locality.h"
#include "agent/inventory/pci_inventory.h"
#include "agent/inventory/rdma_inventory.h"
#include "agent/inventory/testing/sysfs_tree.h"
#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

using rpci::v1::PcieFunction;
using rpci::v1::RdmaNic;
using testing::SysfsTree;

// Captures log lines for one test.
class LogCapture {
 public:
  LogCapture() { Logger::SetSink(&out_); }
  ~LogCapture() { Logger::SetSink(&std::cerr); }
  int Count(const std::string& needle) const {
    std::string text = out_.str();
    int n = 0;
    for (size_t pos = text.find(needle); pos != std::string::npos;
         pos = text.find(needle, pos + 1)) {
      ++n;
    }
    return n;
  }

 private:
  std::ostringstream out_;
};

std::vector<RdmaNic> ScanNics(const std::string& root, RdmaSource source) {
  RdmaInventory inventory(root, source);
  absl::StatusOr<std::vector<RdmaNic>> nics = inventory.Scan();
  EXPECT_TRUE(nics.ok()) << nics.status();
  return nics.ok() ? *nics : std::vector<RdmaNic>();
}

std::vector<PcieFunction> ScanFunctions(const SysfsTree& tree) {
  absl::StatusOr<std::vector<PcieFunction>> fns = ScanPciFunctions(tree.root(), nullptr);
  EXPECT_TRUE(fns.ok()) << fns.status();
  return fns.ok() ? *fns : std::vector<PcieFunction>();
}

const PcieFunction& Fn(const std::vector<PcieFunction>& fns, const std::string& bdf) {
  for (const PcieFunction& fn : fns) {
    if (fn.bdf() == bdf) return fn;
  }
  ADD_FAILURE() << "no function " << bdf;
  static PcieFunction none;
  return none;
}

// Where the NICs of `tree` stand relative to the function `bdf`.
NicLocality LocalityOf(const SysfsTree& tree, const std::string& bdf) {
  std::vector<PcieFunction> fns = ScanFunctions(tree);
  return FindLocalNics(Fn(fns, bdf), ScanNics(tree.root(), RdmaSource::kSysfs), fns);
}

TEST(RdmaInventoryTest, SysfsSourceReadsPortsGidsAndThePciAddress) {
  SysfsTree tree;
  testing::AddSwitchTopology(tree);
  tree.AddRdmaDevice("mlx5_0", "0000:04:00.0");
  std::vector<RdmaNic> nics = ScanNics(tree.root(), RdmaSource::kSysfs);
  ASSERT_EQ(nics.size(), 1u);
  const RdmaNic& nic = nics[0];
  EXPECT_EQ(nic.name(), "mlx5_0");
  EXPECT_EQ(nic.bdf(), "0000:04:00.0");
  EXPECT_EQ(nic.numa_node(), 0);
  EXPECT_EQ(nic.node_guid(), "0002:c903:0042:1234");
  ASSERT_EQ(nic.ports_size(), 1);
  EXPECT_EQ(nic.ports(0).port(), 1u);
  EXPECT_EQ(nic.ports(0).state(), "ACTIVE");
  EXPECT_EQ(nic.ports(0).link_layer(), "Ethernet");
  // The all-zero GID table entry is not reported.
  EXPECT_EQ(std::vector<std::string>(nic.ports(0).gids().begin(), nic.ports(0).gids().end()),
            std::vector<std::string>{"fe80:0000:0000:0000:0202:c9ff:fe42:1234"});
}

TEST(RdmaInventoryTest, SoftwareDeviceWithoutPciFunctionHasNoAddress) {
  SysfsTree tree;
  tree.AddRdmaDevice("rxe0", "0000:00:09.0", "1: DOWN");
  tree.Remove("devices/virtual/infiniband/rxe0/device");
  std::vector<RdmaNic> nics = ScanNics(tree.root(), RdmaSource::kSysfs);
  ASSERT_EQ(nics.size(), 1u);
  EXPECT_EQ(nics[0].bdf(), "");
  EXPECT_EQ(nics[0].numa_node(), -1);
  EXPECT_EQ(nics[0].ports(0).state(), "DOWN");
}

TEST(RdmaInventoryTest, PortsNameTheirNetdevAndTheNicItsUverbsDevice) {
  SysfsTree tree;
  tree.AddRdmaDevice("mlx5_0", "0000:04:00.0");
  tree.WriteFile("devices/virtual/infiniband/mlx5_0/ports/1/gid_attrs/ndevs/0", "enp4s0f0\n");
  tree.MakeDir("class/net/enp4s0f0");
  tree.WriteFile("class/infiniband_verbs/uverbs0/ibdev", "other\n");
  tree.WriteFile("class/infiniband_verbs/uverbs3/ibdev", "mlx5_0\n");
  std::vector<RdmaNic> nics = ScanNics(tree.root(), RdmaSource::kSysfs);
  ASSERT_EQ(nics.size(), 1u);
  EXPECT_EQ(nics[0].ports(0).netdev(), "enp4s0f0");
  EXPECT_EQ(nics[0].uverbs_device(), "/dev/infiniband/uverbs3");
  EXPECT_EQ(nics[0].location_source(), "device");
}

// rxe on a PCI Ethernet NIC sits where that NIC does; rxe on a veth has no
// location, and is then what every device gets (nothing is nearer).
TEST(RdmaInventoryTest, SoftwareDeviceIsPlacedByItsNetdevOrNowhere) {
  SysfsTree tree;
  testing::AddSwitchTopology(tree);
  tree.AddSoftRdmaDevice("rxe0", "enp4s0");
  tree.Symlink("../../../bus/pci/devices/0000:04:00.0", "class/net/enp4s0/device");
  tree.AddRdmaDevice("rxe1", "0000:00:00.0");
  tree.Remove("devices/virtual/infiniband/rxe1/device");
  tree.WriteFile("devices/virtual/infiniband/rxe1/ports/1/gid_attrs/ndevs/0", "veth0\n");
  tree.MakeDir("class/net/veth0");
  // A device whose netdev is in another network namespace: none named.
  tree.AddSoftRdmaDevice("rxe2", "veth1");
  std::vector<RdmaNic> nics = ScanNics(tree.root(), RdmaSource::kSysfs);
  ASSERT_EQ(nics.size(), 3u);
  EXPECT_EQ(nics[2].ports(0).netdev(), "");
  nics.pop_back();
  EXPECT_EQ(nics[0].ports(0).netdev(), "enp4s0");
  EXPECT_EQ(nics[0].bdf(), "0000:04:00.0");
  EXPECT_EQ(nics[0].numa_node(), 0);
  EXPECT_EQ(nics[0].location_source(), "netdev");
  EXPECT_EQ(nics[1].ports(0).netdev(), "veth0");
  EXPECT_EQ(nics[1].bdf(), "");
  EXPECT_EQ(nics[1].location_source(), "");

  std::vector<PcieFunction> fns = ScanFunctions(tree);
  NicLocality gpu = FindLocalNics(Fn(fns, "0000:03:00.0"), nics, fns);
  EXPECT_EQ(gpu.kind, LocalityKind::kSwitch);
  EXPECT_EQ(gpu.nics, std::vector<std::string>{"rxe0"});
  nics.erase(nics.begin());
  NicLocality alone = FindLocalNics(Fn(fns, "0000:03:00.0"), nics, fns);
  EXPECT_EQ(alone.kind, LocalityKind::kUnplaced);
  EXPECT_EQ(alone.nics, std::vector<std::string>{"rxe1"});
}

TEST(RdmaInventoryTest, NoDevicesReportsNoneAndSaysSoOnce) {
  LogCapture logs;
  SysfsTree tree;
  RdmaInventory inventory(tree.root(), RdmaSource::kSysfs);
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::vector<RdmaNic>> nics = inventory.Scan();
    ASSERT_TRUE(nics.ok()) << nics.status();
    EXPECT_TRUE(nics->empty());
  }
  EXPECT_EQ(logs.Count("no RDMA devices found"), 1);
}

// rdma-core and sysfs must tell the same story about the live machine (on a
// machine without RDMA hardware, both say "none" and the agent says so once).
TEST(RdmaInventoryTest, LiveVerbsAgreesWithLiveSysfs) {
  LogCapture logs;
  RdmaInventory verbs("/sys", DefaultRdmaSource("/sys"));
  absl::StatusOr<std::vector<RdmaNic>> from_verbs = verbs.Scan();
  ASSERT_TRUE(from_verbs.ok()) << from_verbs.status();
  ASSERT_TRUE(verbs.Scan().ok());
  std::vector<RdmaNic> from_sysfs = ScanNics("/sys", RdmaSource::kSysfs);
  ASSERT_EQ(from_verbs->size(), from_sysfs.size());
  for (size_t i = 0; i < from_sysfs.size(); ++i) {
    EXPECT_EQ((*from_verbs)[i].name(), from_sysfs[i].name());
    EXPECT_EQ((*from_verbs)[i].bdf(), from_sysfs[i].bdf());
    EXPECT_EQ((*from_verbs)[i].node_guid(), from_sysfs[i].node_guid());
    EXPECT_EQ((*from_verbs)[i].ports_size(), from_sysfs[i].ports_size());
    EXPECT_EQ((*from_verbs)[i].uverbs_device(), from_sysfs[i].uverbs_device());
  }
  if (from_verbs->empty()) {
    EXPECT_EQ(logs.Count("no RDMA devices found"), 2);  // verbs once, sysfs once
  }
}

TEST(LocalityTest, NicBesideGpuUnderOneSwitchIsSwitchLocal) {
  SysfsTree tree;
  testing::AddSwitchTopology(tree);
  tree.MakeDir("devices/pci0000:80");
  tree.AddFunction(testing::FunctionAt("0000:80:00.0", "pci0000:80", "1"));
  tree.AddRdmaDevice("mlx5_0", "0000:04:00.0");
  tree.AddRdmaDevice("mlx5_1", "0000:80:00.0");

  // GPU (numa 1) shares switch 01:00.0 with mlx5_0 (numa 0); mlx5_1 is on
  // its NUMA node but the switch wins.
  NicLocality gpu = LocalityOf(tree, "0000:03:00.0");
  EXPECT_EQ(gpu.kind, LocalityKind::kSwitch);
  EXPECT_EQ(gpu.nics, std::vector<std::string>{"mlx5_0"});

  // The NVMe drive on the root complex shares no bridge: NUMA node 0 -> mlx5_0.
  NicLocality nvme = LocalityOf(tree, "0000:00:02.0");
  EXPECT_EQ(nvme.kind, LocalityKind::kNuma);
  EXPECT_EQ(nvme.nics, std::vector<std::string>{"mlx5_0"});
}

// Where a NIC at `nic` stands to a device at `device`, both functions on
// the root complex with unknown NUMA nodes.
NicLocality LocalityWithUnknownNuma(const std::string& device, const std::string& nic) {
  SysfsTree tree;
  tree.AddFunction(testing::FunctionAt(device, "pci0000:00", "-1"));
  tree.AddFunction(testing::FunctionAt(nic, "pci0000:00", "-1"));
  tree.AddRdmaDevice("mlx5_0", nic);
  return LocalityOf(tree, device);
}

TEST(LocalityTest, UnknownNumaNodeWithoutSharedSwitchHasNoLocalNic) {
  NicLocality loc = LocalityWithUnknownNuma("0000:00:02.0", "0000:00:03.0");
  EXPECT_EQ(loc.kind, LocalityKind::kNone);
  EXPECT_TRUE(loc.nics.empty());
}

TEST(LocalityTest, FunctionsOfOneSlotAreSwitchLocal) {
  NicLocality loc = LocalityWithUnknownNuma("0000:00:05.0", "0000:00:05.1");
  EXPECT_EQ(loc.kind, LocalityKind::kSwitch);
  EXPECT_EQ(loc.nics, std::vector<std::string>{"mlx5_0"});
}

}  // namespace
}  // namespace rpci::agent
