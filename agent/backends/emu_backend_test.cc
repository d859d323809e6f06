#include "agent/backends/emu_backend.h"

#include <algorithm>
#include <cstring>

#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

// A COPY descriptor at 0x1000 of `dma`, ring of 2 and the interrupt enabled.
void ProgramCopy(SessionDevice& dev) {
  uint8_t* dma = dev.dma_space();
  std::memcpy(dma + 0x4000, "payload!", 8);
  const uint64_t d = 0x1000;
  dma[d + emu::kDescOpcode] = emu::kOpCopy;
  dma[d + emu::kDescFlags] = emu::kFlagInterrupt;
  uint32_t len = 8;
  uint64_t src = 0x4000, dst = 0x5000;
  std::memcpy(dma + d + emu::kDescLength, &len, 4);
  std::memcpy(dma + d + emu::kDescSrc, &src, 8);
  std::memcpy(dma + d + emu::kDescDst, &dst, 8);
  ASSERT_TRUE(dev.WriteRegister(0, emu::kRegRingBaseLo, 8, d).ok());
  ASSERT_TRUE(dev.WriteRegister(0, emu::kRegRingSize, 4, 2).ok());
  ASSERT_TRUE(dev.WriteRegister(0, emu::kRegIntMask, 4, emu::kIntCompletion).ok());
  ASSERT_TRUE(dev.WriteRegister(0, emu::kRegControl, 4, emu::kControlEnable).ok());
}

TEST(EmuBackendTest, CopyThroughRegisterWritesRaisesTheCompletionInterrupt) {
  auto dev = *EmuBackend::Create(1 << 16);
  EXPECT_EQ(dev->kind(), "emu");
  ASSERT_EQ(dev->Bars().size(), 1u);
  EXPECT_EQ(dev->Bars()[0].size, emu::kBar0Size);
  EXPECT_EQ(dev->dma_size(), 1u << 16);
  ProgramCopy(*dev);
  ASSERT_TRUE(dev->WriteRegister(0, emu::kRegDoorbell, 4, 1).ok());
  EXPECT_EQ(0, std::memcmp(dev->dma_space() + 0x5000, "payload!", 8));
  auto irqs = dev->TakeInterrupts();
  ASSERT_EQ(irqs.size(), 1u);
  EXPECT_EQ(irqs[0].vector, 0);
  EXPECT_EQ(irqs[0].cause, emu::kIntCompletion);
  EXPECT_TRUE(dev->TakeInterrupts().empty());

  uint32_t regs[2];
  ASSERT_TRUE(dev->ReadBar(0, emu::kRegRingHead, 8, reinterpret_cast<uint8_t*>(regs)).ok());
  EXPECT_EQ(regs[0], 1u);  // RING_HEAD
  EXPECT_EQ(regs[1], 1u);  // RING_TAIL
}

TEST(EmuBackendTest, BadWidthsAndRangesAreErrors) {
  auto dev = *EmuBackend::Create(1 << 16);
  uint8_t buf[16];
  EXPECT_EQ(dev->WriteRegister(0, 0x40, 2, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev->WriteRegister(0, 0x40, 4, uint64_t{1} << 32).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev->WriteRegister(1, 0x40, 4, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dev->ReadBar(0, 2, 4, buf).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev->ReadBar(0, emu::kBar0Size - 8, 16, buf).code(), absl::StatusCode::kOutOfRange);
}

TEST(EmuBackendTest, ResetLeavesPowerOnRegistersNoInterruptsAndZeroedDma) {
  auto dev = *EmuBackend::Create(1 << 16);
  ProgramCopy(*dev);
  ASSERT_TRUE(dev->WriteRegister(0, emu::kRegScratch, 4, 0x5ca1ab1e).ok());
  ASSERT_TRUE(dev->WriteRegister(0, emu::kRegDoorbell, 4, 1).ok());
  std::vector<uint8_t> fresh(emu::kBar0Size);
  ASSERT_TRUE((*EmuBackend::Create(1 << 16))->ReadBar(0, 0, fresh.size(), fresh.data()).ok());

  ASSERT_TRUE(dev->Reset().ok());

  std::vector<uint8_t> bar(emu::kBar0Size);
  ASSERT_TRUE(dev->ReadBar(0, 0, bar.size(), bar.data()).ok());
  EXPECT_EQ(bar, fresh);
  EXPECT_TRUE(dev->TakeInterrupts().empty());
  EXPECT_EQ(std::count(dev->dma_space(), dev->dma_space() + dev->dma_size(), 0), 1 << 16);
}

}  // namespace
}  // namespace rpci::agent
