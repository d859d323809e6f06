// Runs inside the test machine (tests/vm:machine_test): the guest has what the
// VM suites rely on.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace {

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The first PCI function with this vendor:device, or "".
std::string FindFunction(const std::string& vendor, const std::string& device) {
  for (const auto& e : std::filesystem::directory_iterator("/sys/bus/pci/devices")) {
    if (ReadFirstLine(e.path() / "vendor") == vendor && ReadFirstLine(e.path() / "device") == device) {
      return e.path().filename();
    }
  }
  return "";
}

TEST(TestMachine, HasTheEmulatedIommuWithGroups) {
  EXPECT_TRUE(std::filesystem::exists("/sys/class/iommu/dmar0"));
  EXPECT_FALSE(std::filesystem::is_empty("/sys/kernel/iommu_groups"));
}

TEST(TestMachine, HasEduAndNvmeInTheirOwnIommuGroups) {
  for (const auto& [vendor, device] : {std::pair<std::string, std::string>{"0x1234", "0x11e8"}, {"0x1b36", "0x0010"}}) {
    std::string bdf = FindFunction(vendor, device);
    ASSERT_FALSE(bdf.empty()) << vendor << ":" << device;
    std::filesystem::path group = std::filesystem::read_symlink("/sys/bus/pci/devices/" + bdf + "/iommu_group");
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator("/sys/kernel/iommu_groups" / group.filename() / "devices"),
                            std::filesystem::directory_iterator{}),
              1)
        << bdf;
  }
}

TEST(TestMachine, LoadsVfioPciWithTheHostsModprobe) {
  ASSERT_EQ(std::system("modprobe vfio-pci"), 0);
  EXPECT_TRUE(std::filesystem::exists("/sys/bus/pci/drivers/vfio-pci"));
  EXPECT_TRUE(std::filesystem::exists("/dev/vfio/vfio"));
}

TEST(TestMachine, KernelAutoloadReachesTheHostsModules) {
  // `ip link add ... type veth` makes the kernel request_module("rtnl-link-veth").
  std::string name = "rv" + std::to_string(getpid());
  ASSERT_EQ(std::system(("ip link add " + name + "a type veth peer name " + name + "b").c_str()), 0);
  EXPECT_EQ(std::system(("ip link del " + name + "a").c_str()), 0);
}

TEST(TestMachine, HasUserNetworkingOnEth0) {
  // QEMU user networking: the guest is 10.0.2.15, the host 10.0.2.2
  // (tools/vm.sh --hostfwd forwards host ports to the guest).
  EXPECT_EQ(std::system("ip -4 addr show eth0 | grep -q 'inet 10.0.2.15/24'"), 0);
  EXPECT_EQ(std::system("ip route | grep -q 'default via 10.0.2.2'"), 0);
}

TEST(TestMachine, HasDevFdShmAndPts) {
  struct stat st;
  EXPECT_EQ(stat("/dev/fd/0", &st), 0);
  EXPECT_EQ(access("/dev/shm", W_OK), 0);
  EXPECT_EQ(stat("/dev/pts/ptmx", &st), 0);
}

TEST(TestMachine, SeesTheHostRootReadOnlyUnderAWritableOverlay) {
  EXPECT_TRUE(std::filesystem::exists("/usr/bin/qemu-system-x86_64"));  // the host's
  std::ofstream("/etc/rpci-vm-probe") << "x";
  EXPECT_EQ(ReadFirstLine("/etc/rpci-vm-probe"), "x");
}

}  // namespace
