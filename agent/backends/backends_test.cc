#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "agent/backends/emu_backend.h"
#include "agent/backends/sysfs_bar_backend.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

namespace fs = std::filesystem;

TEST(EmuBackendTest, ExposesBar0AndRunsWorkThroughTheDoorbell) {
  auto backend = EmuBackend::Create(1 << 20);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EmuBackend& b = **backend;
  EXPECT_EQ(b.kind(), "emu");
  ASSERT_EQ(b.Bars().size(), 1u);
  EXPECT_EQ(b.Bars()[0].index, 0);
  EXPECT_EQ(b.Bars()[0].size, emu::kBar0Size);
  EXPECT_EQ(*b.Read32(0, emu::kRegDeviceId), emu::kDeviceIdValue);

  // Ring at 0x1000 via one 64-bit write, a FILL descriptor, the doorbell.
  ASSERT_TRUE(b.Write64(0, emu::kRegRingBaseLo, 0x1000).ok());
  ASSERT_TRUE(b.Write32(0, emu::kRegRingSize, 4).ok());
  ASSERT_TRUE(b.Write32(0, emu::kRegIntMask, emu::kIntCompletion).ok());
  ASSERT_TRUE(b.Write32(0, emu::kRegControl, emu::kControlEnable).ok());
  DmaSpace* dma = b.dma();
  ASSERT_NE(dma, nullptr);
  dma->data()[0x1000 + emu::kDescOpcode] = emu::kOpFill;
  dma->data()[0x1000 + emu::kDescFlags] = emu::kFlagInterrupt;
  dma->Store32(0x1000 + emu::kDescLength, 64);
  dma->Store64(0x1000 + emu::kDescDst, 0x8000);
  dma->Store64(0x1000 + emu::kDescValue, 0xEE);
  ASSERT_TRUE(b.Write32(0, emu::kRegDoorbell, 1).ok());
  EXPECT_EQ(dma->data()[0x8000 + 63], 0xEE);
  // The BAR window shows the register file as a session would mirror it.
  uint32_t head;
  std::memcpy(&head, b.Bars()[0].data + emu::kRegRingHead, 4);
  EXPECT_EQ(head, 1u);
  std::vector<DeviceInterrupt> irqs = b.Poll();
  ASSERT_EQ(irqs.size(), 1u);
  EXPECT_EQ(irqs[0].vector, 0);
  EXPECT_TRUE(b.Poll().empty());
}

TEST(EmuBackendTest, AccessesAreBoundsChecked) {
  auto b = *EmuBackend::Create(4096);
  EXPECT_EQ(b->Read32(2, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b->Read32(0, 4096).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(b->Write32(0, 4094, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->Write64(0, 4092, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->Write64(0, 4096, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(b->Write32(0, UINT64_MAX - 3, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(EmuBackend::Create(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmuBackend::Create(uint64_t{1} << 40).status().code(), absl::StatusCode::kInvalidArgument);
}

// A temporary sysfs tree with one function whose BARs are regular files.
class SysfsBarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::rpci::testing::MakeTempDir("rpci-sysfs");
    dev_ = root_ + "/bus/pci/devices/0000:3b:00.0";
    fs::create_directories(dev_);
    MakeBar(0, 4096);
    MakeBar(2, 16384);
    MakeBar(4, 32);  // an I/O BAR per `resource`
    std::ofstream(dev_ + "/resource") << "0x00000000f0000000 0x00000000f0000fff 0x0000000000040200\n"
                                         "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
                                         "0x00000000f0010000 0x00000000f0013fff 0x000000000014220c\n"
                                         "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
                                         "0x000000000000e000 0x000000000000e01f 0x0000000000040101\n";
  }
  void TearDown() override { fs::remove_all(root_); }

  void MakeBar(int index, off_t size) {
    std::string path = dev_ + "/resource" + std::to_string(index);
    int fd = open(path.c_str(), O_CREAT | O_RDWR, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, size), 0);
    close(fd);
  }

  uint32_t FileWord(int bar, off_t offset) {
    uint32_t v = 0;
    int fd = open((dev_ + "/resource" + std::to_string(bar)).c_str(), O_RDONLY);
    EXPECT_EQ(pread(fd, &v, 4, offset), 4);
    close(fd);
    return v;
  }

  SysfsBarOptions Options() {
    SysfsBarOptions o;
    o.sysfs_root = root_;
    o.bdf = "0000:3b:00.0";
    o.allow = true;
    return o;
  }

  std::string root_, dev_;
};

TEST_F(SysfsBarTest, MapsMemoryBarsAndSkipsIoBars) {
  auto backend = SysfsBarBackend::Open(Options());
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<BarWindow> bars = (*backend)->Bars();
  ASSERT_EQ(bars.size(), 2u);
  EXPECT_EQ(bars[0].index, 0);
  EXPECT_EQ(bars[0].size, 4096u);
  EXPECT_EQ(bars[1].index, 2);
  EXPECT_EQ(bars[1].size, 16384u);
  EXPECT_EQ((*backend)->kind(), "sysfs-bar");
  EXPECT_EQ((*backend)->dma(), nullptr);
}

TEST_F(SysfsBarTest, RegisterWritesReachTheResourceFile) {
  auto b = *SysfsBarBackend::Open(Options());
  ASSERT_TRUE(b->Write32(0, 0x10, 0xCAFEF00D).ok());
  ASSERT_TRUE(b->Write64(2, 0x100, 0x1122334455667788ull).ok());
  EXPECT_EQ(FileWord(0, 0x10), 0xCAFEF00Du);
  EXPECT_EQ(FileWord(2, 0x100), 0x55667788u);
  EXPECT_EQ(FileWord(2, 0x104), 0x11223344u);
  EXPECT_EQ(*b->Read32(0, 0x10), 0xCAFEF00Du);
}

TEST_F(SysfsBarTest, AccessesAreBoundsChecked) {
  auto b = *SysfsBarBackend::Open(Options());
  EXPECT_EQ(b->Read32(4, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b->Read32(0, 4096).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(b->Write32(2, 16384 - 2, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->Write64(2, 16384, 0).code(), absl::StatusCode::kOutOfRange);
}

TEST_F(SysfsBarTest, RefusesWithoutTheOperatorsOptIn) {
  SysfsBarOptions o = Options();
  o.allow = false;
  absl::Status s = SysfsBarBackend::Open(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("opt in"), std::string::npos) << s;
}

TEST_F(SysfsBarTest, RefusesADeviceBoundToAHostDriver) {
  fs::create_directories(root_ + "/bus/pci/drivers/nvme");
  fs::create_directory_symlink("../../../bus/pci/drivers/nvme", dev_ + "/driver");
  absl::Status s = SysfsBarBackend::Open(Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("\"nvme\""), std::string::npos) << s;
}

TEST_F(SysfsBarTest, RejectsMalformedOrMissingDevices) {
  SysfsBarOptions o = Options();
  for (const char* bdf : {"", "../../../etc", "0000:3b:00.0/..", "3b:00.0", "0000:3B:00.0", "0000:3b:20.0"}) {
    o.bdf = bdf;
    EXPECT_EQ(SysfsBarBackend::Open(o).status().code(), absl::StatusCode::kInvalidArgument) << bdf;
  }
  o.bdf = "0000:3c:00.0";
  EXPECT_EQ(SysfsBarBackend::Open(o).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SysfsBarTest, ADeviceWithoutMemoryBarsIsRefused) {
  for (int i : {0, 2}) fs::remove(dev_ + "/resource" + std::to_string(i));
  absl::Status s = SysfsBarBackend::Open(Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace rpci::agent
