#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <algorithm>
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

uint32_t Word(SessionDevice& d, uint16_t bar, uint64_t offset) {
  uint32_t v = 0;
  EXPECT_TRUE(d.ReadBar(bar, offset, 4, reinterpret_cast<uint8_t*>(&v)).ok());
  return v;
}

TEST(EmuBackendTest, AccessesAreBoundsChecked) {
  auto b = *EmuBackend::Create(4096);
  uint8_t buf[8];
  EXPECT_EQ(b->ReadBar(2, 0, 4, buf).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b->ReadBar(0, 4096, 4, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(b->WriteRegister(0, 4094, 4, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->WriteRegister(0, 4092, 8, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->WriteRegister(0, 4096, 8, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(b->WriteRegister(0, UINT64_MAX - 3, 4, 1).code(), absl::StatusCode::kOutOfRange);
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
  std::vector<SessionDevice::Bar> bars = (*backend)->Bars();
  ASSERT_EQ(bars.size(), 2u);
  EXPECT_EQ(bars[0].index, 0);
  EXPECT_EQ(bars[0].size, 4096u);
  EXPECT_EQ(bars[1].index, 2);
  EXPECT_EQ(bars[1].size, 16384u);
  EXPECT_EQ((*backend)->kind(), "sysfs-bar");
  EXPECT_EQ((*backend)->dma_size(), SysfsBarBackend::kLocalDmaSize);
}

TEST_F(SysfsBarTest, RegisterWritesReachTheResourceFile) {
  auto b = *SysfsBarBackend::Open(Options());
  ASSERT_TRUE(b->WriteRegister(0, 0x10, 4, 0xCAFEF00D).ok());
  ASSERT_TRUE(b->WriteRegister(2, 0x100, 8, 0x1122334455667788ull).ok());
  EXPECT_EQ(FileWord(0, 0x10), 0xCAFEF00Du);
  EXPECT_EQ(FileWord(2, 0x100), 0x55667788u);
  EXPECT_EQ(FileWord(2, 0x104), 0x11223344u);
  EXPECT_EQ(Word(*b, 0, 0x10), 0xCAFEF00Du);
}

TEST_F(SysfsBarTest, AccessesAreBoundsChecked) {
  auto b = *SysfsBarBackend::Open(Options());
  uint8_t buf[4];
  EXPECT_EQ(b->ReadBar(4, 0, 4, buf).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b->ReadBar(0, 4096, 4, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(b->WriteRegister(2, 16384 - 2, 4, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->WriteRegister(2, 16384, 8, 0).code(), absl::StatusCode::kOutOfRange);
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

TEST_F(SysfsBarTest, ResetGoesThroughTheKernelsResetFileAndZeroesTheLocalDma) {
  auto b = *SysfsBarBackend::Open(Options());
  std::memset(b->dma_space(), 0xab, b->dma_size());
  std::ofstream(dev_ + "/reset") << "";
  ASSERT_TRUE(b->Reset().ok());
  std::ifstream in(dev_ + "/reset");
  std::string written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(written, "1");
  EXPECT_EQ(std::count(b->dma_space(), b->dma_space() + b->dma_size(), 0), static_cast<long>(b->dma_size()));
}

TEST_F(SysfsBarTest, AFunctionWithoutAResetMethodIsNotClean) {
  auto b = *SysfsBarBackend::Open(Options());
  absl::Status s = b->Reset();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("not clean"), std::string::npos) << s;
}

TEST_F(SysfsBarTest, ADeviceWithoutMemoryBarsIsRefused) {
  for (int i : {0, 2}) fs::remove(dev_ + "/resource" + std::to_string(i));
  absl::Status s = SysfsBarBackend::Open(Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace rpci::agent
