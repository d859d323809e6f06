#include "agent/backends/session_device_adapter.h"

#include <cstring>

#include "agent/backends/emu_backend.h"
#include "agent/backends/sysfs_bar_backend.h"
#include "agent/inventory/testing/sysfs_tree.h"
#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

std::unique_ptr<SessionDeviceAdapter> EmuSession() {
  auto backend = EmuBackend::Create(1 << 16);
  EXPECT_TRUE(backend.ok());
  return std::make_unique<SessionDeviceAdapter>(std::move(*backend));
}

TEST(SessionDeviceAdapterTest, CopyThroughRegisterWritesRaisesTheCompletionInterrupt) {
  auto dev = EmuSession();
  ASSERT_EQ(dev->Bars().size(), 1u);
  EXPECT_EQ(dev->Bars()[0].size, emu::kBar0Size);
  EXPECT_EQ(dev->dma_size(), 1u << 16);
  uint8_t* dma = dev->dma_space();
  std::memcpy(dma + 0x4000, "payload!", 8);
  const uint64_t d = 0x1000;
  dma[d + emu::kDescOpcode] = emu::kOpCopy;
  dma[d + emu::kDescFlags] = emu::kFlagInterrupt;
  uint32_t len = 8;
  uint64_t src = 0x4000, dst = 0x5000;
  std::memcpy(dma + d + emu::kDescLength, &len, 4);
  std::memcpy(dma + d + emu::kDescSrc, &src, 8);
  std::memcpy(dma + d + emu::kDescDst, &dst, 8);
  ASSERT_TRUE(dev->WriteRegister(0, emu::kRegRingBaseLo, 8, d).ok());
  ASSERT_TRUE(dev->WriteRegister(0, emu::kRegRingSize, 4, 2).ok());
  ASSERT_TRUE(dev->WriteRegister(0, emu::kRegIntMask, 4, emu::kIntCompletion).ok());
  ASSERT_TRUE(dev->WriteRegister(0, emu::kRegControl, 4, emu::kControlEnable).ok());
  ASSERT_TRUE(dev->WriteRegister(0, emu::kRegDoorbell, 4, 1).ok());
  EXPECT_EQ(0, std::memcmp(dma + 0x5000, "payload!", 8));
  auto irqs = dev->TakeInterrupts();
  ASSERT_EQ(irqs.size(), 1u);
  EXPECT_EQ(irqs[0].vector, 0);
  EXPECT_EQ(irqs[0].cause, emu::kIntCompletion);

  uint32_t regs[2];
  ASSERT_TRUE(dev->ReadBar(0, emu::kRegRingHead, 8, reinterpret_cast<uint8_t*>(regs)).ok());
  EXPECT_EQ(regs[0], 1u);  // RING_HEAD
  EXPECT_EQ(regs[1], 1u);  // RING_TAIL
}

TEST(SessionDeviceAdapterTest, BadWidthsAndRangesAreErrors) {
  auto dev = EmuSession();
  uint8_t buf[16];
  EXPECT_EQ(dev->WriteRegister(0, 0x40, 2, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev->WriteRegister(0, 0x40, 4, uint64_t{1} << 32).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev->WriteRegister(1, 0x40, 4, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dev->ReadBar(0, 2, 4, buf).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev->ReadBar(0, emu::kBar0Size - 8, 16, buf).code(), absl::StatusCode::kOutOfRange);
}

TEST(SessionDeviceAdapterTest, ABackendWithoutDmaSpaceGetsALocalOneTheDeviceNeverSees) {
  testing::SysfsTree tree;
  testing::FakeFunction fn;
  fn.bdf = "0000:3b:00.0";
  fn.resource = "0x00000000f0000000 0x00000000f0000fff 0x0000000000040200\n";
  const std::string dir = tree.AddFunction(fn);
  tree.WriteFile(dir + "/resource0", std::string(4096, '\0'));
  SysfsBarOptions options;
  options.sysfs_root = tree.root();
  options.bdf = fn.bdf;
  options.allow = true;
  auto backend = SysfsBarBackend::Open(options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  ASSERT_EQ((*backend)->dma(), nullptr);
  SessionDeviceAdapter dev(std::move(*backend));

  ASSERT_NE(dev.dma_space(), nullptr);
  EXPECT_EQ(dev.dma_size(), SessionDeviceAdapter::kLocalDmaSize);
  std::memset(dev.dma_space(), 0xab, dev.dma_size());  // the whole space is ours to write
  ASSERT_TRUE(dev.WriteRegister(0, 0x10, 4, 0x12345678).ok());
  uint32_t word = 0;
  ASSERT_TRUE(dev.ReadBar(0, 0x10, 4, reinterpret_cast<uint8_t*>(&word)).ok());
  EXPECT_EQ(word, 0x12345678u);
  EXPECT_TRUE(dev.TakeInterrupts().empty());
}

TEST(SessionDeviceAdapterTest, ABackendsOwnDmaSpaceIsUsedAsItIs) {
  auto backend = EmuBackend::Create(1 << 16);
  ASSERT_TRUE(backend.ok());
  uint8_t* own = (*backend)->dma()->data();
  SessionDeviceAdapter dev(std::move(*backend));
  EXPECT_EQ(dev.dma_space(), own);
  EXPECT_EQ(dev.dma_size(), 1u << 16);
}

}  // namespace
}  // namespace rpci::agent
