#include "agent/emu/emu_device.h"

#include <cstring>
#include <string>
#include <vector>

#include "agent/emu/crc32c.h"
#include "gtest/gtest.h"

namespace rpci::agent::emu {
namespace {

constexpr uint64_t kDma = 1 << 20;
constexpr uint64_t kRing = 0x1000;  // descriptor ring at 4 KiB
constexpr uint32_t kRingEntries = 8;

uint32_t Reg(EmuDevice& dev, uint64_t offset) {
  absl::StatusOr<uint32_t> v = dev.Read32(offset);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.value_or(0xDEADBEEF);
}

void Set(EmuDevice& dev, uint64_t offset, uint32_t value) { ASSERT_TRUE(dev.Write32(offset, value).ok()); }

struct Desc {
  uint8_t opcode = kOpCopy;
  uint8_t flags = kFlagInterrupt;
  uint32_t length = 0;
  uint64_t src = 0, dst = 0, src2 = 0, value = 0, cookie = 0x600D;
};

void Put(EmuDevice& dev, uint32_t index, const Desc& d) {
  DmaSpace& dma = dev.dma();
  const uint64_t at = kRing + index * kDescSize;
  std::memset(dma.data() + at, 0, kDescSize);
  dma.data()[at + kDescOpcode] = d.opcode;
  dma.data()[at + kDescFlags] = d.flags;
  dma.Store32(at + kDescLength, d.length);
  dma.Store64(at + kDescSrc, d.src);
  dma.Store64(at + kDescDst, d.dst);
  dma.Store64(at + kDescSrc2, d.src2);
  dma.Store64(at + kDescValue, d.value);
  dma.Store64(at + kDescCookie, d.cookie);
}

uint32_t StatusOf(EmuDevice& dev, uint32_t index) { return dev.dma().Load32(kRing + index * kDescSize + kDescStatus); }
uint32_t ResultOf(EmuDevice& dev, uint32_t index) { return dev.dma().Load32(kRing + index * kDescSize + kDescResult); }

// A device with its ring programmed and enabled, both interrupts unmasked.
void Enable(EmuDevice& dev, uint32_t entries = kRingEntries) {
  Set(dev, kRegRingBaseLo, kRing);
  Set(dev, kRegRingBaseHi, 0);
  Set(dev, kRegRingSize, entries);
  Set(dev, kRegIntMask, kIntCompletion | kIntError);
  Set(dev, kRegControl, kControlEnable);
  ASSERT_EQ(Reg(dev, kRegStatus), kStatusReady | kStatusEnabled);
}

// Runs one descriptor at ring index 0 and returns its status.
uint32_t RunOne(EmuDevice& dev, const Desc& d) {
  Put(dev, 0, d);
  EXPECT_TRUE(dev.Write32(kRegDoorbell, 1).ok());
  return StatusOf(dev, 0);
}

TEST(Crc32cTest, MatchesCastagnoliTestVectors) {
  const std::string check = "123456789";
  EXPECT_EQ(Crc32c(reinterpret_cast<const uint8_t*>(check.data()), check.size()), 0xE3069283u);
  EXPECT_EQ(Crc32c(nullptr, 0), 0u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);
}

TEST(EmuRegistersTest, IdentityRegistersReadTheirValuesAfterReset) {
  EmuDevice dev(kDma);
  EXPECT_EQ(Reg(dev, kRegDeviceId), kDeviceIdValue);
  EXPECT_EQ(Reg(dev, kRegVersion), kVersionValue);
  EXPECT_EQ(Reg(dev, kRegStatus), kStatusReady);
  EXPECT_EQ(Reg(dev, kRegDmaSize), kDma);
  for (uint64_t r : {kRegControl, kRegRingBaseLo, kRegRingBaseHi, kRegRingSize, kRegRingHead, kRegRingTail,
                     kRegDoorbell, kRegIntCause, kRegIntMask, kRegErrorCode, kRegErrorIndex, kRegCompletedLo,
                     kRegCompletedHi, kRegScratch}) {
    EXPECT_EQ(Reg(dev, r), 0u) << "register 0x" << std::hex << r;
  }
}

TEST(EmuRegistersTest, ReadOnlyRegistersIgnoreWrites) {
  EmuDevice dev(kDma);
  for (uint64_t r : {kRegDeviceId, kRegVersion, kRegStatus, kRegRingHead, kRegRingTail, kRegErrorCode,
                     kRegErrorIndex, kRegCompletedLo, kRegCompletedHi, kRegDmaSize}) {
    const uint32_t before = Reg(dev, r);
    Set(dev, r, 0xA5A5A5A5);
    EXPECT_EQ(Reg(dev, r), before) << "register 0x" << std::hex << r;
  }
}

TEST(EmuRegistersTest, ScratchHoldsWhatIsWritten) {
  EmuDevice dev(kDma);
  Set(dev, kRegScratch, 0x12345678);
  EXPECT_EQ(Reg(dev, kRegScratch), 0x12345678u);
}

TEST(EmuRegistersTest, UnassignedOffsetsReadZeroAndIgnoreWrites) {
  EmuDevice dev(kDma);
  Set(dev, 0x100, 0xFFFFFFFF);
  Set(dev, kBar0Size - 4, 0xFFFFFFFF);
  EXPECT_EQ(Reg(dev, 0x100), 0u);
  EXPECT_EQ(Reg(dev, kBar0Size - 4), 0u);
}

TEST(EmuRegistersTest, DoorbellReadsZero) {
  EmuDevice dev(kDma);
  Enable(dev);
  Put(dev, 0, {kOpFill, 0, 16, 0, 0x8000});
  Set(dev, kRegDoorbell, 1);
  EXPECT_EQ(Reg(dev, kRegDoorbell), 0u);
  EXPECT_EQ(Reg(dev, kRegRingTail), 1u);
}

TEST(EmuRegistersTest, UnalignedOrOutOfRangeAccessIsAnError) {
  EmuDevice dev(kDma);
  EXPECT_EQ(dev.Read32(2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev.Write32(kRegScratch + 1, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev.Read32(kBar0Size).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(dev.Write32(UINT64_MAX - 3, 1).code(), absl::StatusCode::kOutOfRange);
}

TEST(EmuRegistersTest, RingRegistersAreFixedWhileEnabled) {
  EmuDevice dev(kDma);
  Enable(dev);
  Set(dev, kRegRingBaseLo, 0x2000);
  Set(dev, kRegRingSize, 16);
  EXPECT_EQ(Reg(dev, kRegRingBaseLo), kRing);
  EXPECT_EQ(Reg(dev, kRegRingSize), kRingEntries);
  Set(dev, kRegControl, 0);
  EXPECT_EQ(Reg(dev, kRegStatus), kStatusReady);
  Set(dev, kRegRingBaseLo, 0x2000);
  EXPECT_EQ(Reg(dev, kRegRingBaseLo), 0x2000u);
}

TEST(EmuRegistersTest, EnablingABadRingFailsWithBadRing) {
  struct Case {
    uint64_t base;
    uint32_t size;
  };
  for (Case c : std::vector<Case>{{kRing, 0}, {kRing, 3}, {kRing, kMaxRingSize * 2}, {kRing + 8, 8},
                                  {kDma - 64, 2}, {uint64_t{1} << 40, 8}}) {
    EmuDevice dev(kDma);
    Set(dev, kRegIntMask, kIntError);
    Set(dev, kRegRingBaseLo, static_cast<uint32_t>(c.base));
    Set(dev, kRegRingBaseHi, static_cast<uint32_t>(c.base >> 32));
    Set(dev, kRegRingSize, c.size);
    Set(dev, kRegControl, kControlEnable);
    EXPECT_EQ(Reg(dev, kRegControl), 0u) << c.base << "/" << c.size;
    EXPECT_EQ(Reg(dev, kRegStatus), kStatusReady | kStatusError);
    EXPECT_EQ(Reg(dev, kRegErrorCode), kErrBadRing);
    std::vector<Interrupt> irqs = dev.TakeInterrupts();
    ASSERT_EQ(irqs.size(), 1u);
    EXPECT_EQ(irqs[0].vector, 1);
    EXPECT_EQ(irqs[0].cause, kIntError);
  }
}

TEST(EmuRegistersTest, DoorbellWhileDisabledOrBeyondTheRingIsAnError) {
  EmuDevice dev(kDma);
  Set(dev, kRegDoorbell, 1);
  EXPECT_EQ(Reg(dev, kRegErrorCode), kErrNotEnabled);
  Set(dev, kRegIntCause, kIntError);
  Enable(dev);
  Set(dev, kRegDoorbell, kRingEntries);
  EXPECT_EQ(Reg(dev, kRegErrorCode), kErrBadDoorbell);
  EXPECT_EQ(Reg(dev, kRegErrorIndex), kRingEntries);
  EXPECT_EQ(Reg(dev, kRegRingHead), 0u);
}

TEST(EmuRegistersTest, InterruptCauseIsWriteOneToClear) {
  EmuDevice dev(kDma);
  Enable(dev);
  RunOne(dev, {kOpFill, kFlagInterrupt, 16, 0, 0x8000});
  Set(dev, kRegDoorbell, 2);  // descriptor 1 is all zeros: bad opcode
  EXPECT_EQ(Reg(dev, kRegIntCause), kIntCompletion | kIntError);
  EXPECT_EQ(Reg(dev, kRegStatus) & kStatusError, kStatusError);
  Set(dev, kRegIntCause, kIntCompletion);
  EXPECT_EQ(Reg(dev, kRegIntCause), kIntError);
  Set(dev, kRegIntCause, kIntError);
  EXPECT_EQ(Reg(dev, kRegIntCause), 0u);
  EXPECT_EQ(Reg(dev, kRegStatus), kStatusReady | kStatusEnabled);
}

TEST(EmuRegistersTest, MaskedCausesAreDeliveredWhenUnmasked) {
  EmuDevice dev(kDma);
  Enable(dev);
  Set(dev, kRegIntMask, 0);
  RunOne(dev, {kOpFill, kFlagInterrupt, 16, 0, 0x8000});
  EXPECT_EQ(Reg(dev, kRegIntCause), kIntCompletion);
  EXPECT_TRUE(dev.TakeInterrupts().empty());
  Set(dev, kRegIntMask, kIntCompletion);
  std::vector<Interrupt> irqs = dev.TakeInterrupts();
  ASSERT_EQ(irqs.size(), 1u);
  EXPECT_EQ(irqs[0].vector, 0);
}

TEST(EmuRegistersTest, ResetRestoresPowerOnState) {
  EmuDevice dev(kDma);
  Enable(dev);
  RunOne(dev, {kOpFill, kFlagInterrupt, 16, 0, 0x8000});
  Set(dev, kRegScratch, 7);
  Set(dev, kRegControl, kControlReset);
  EXPECT_EQ(Reg(dev, kRegStatus), kStatusReady);
  for (uint64_t r : {kRegControl, kRegRingBaseLo, kRegRingSize, kRegRingHead, kRegIntCause, kRegIntMask,
                     kRegCompletedLo, kRegScratch}) {
    EXPECT_EQ(Reg(dev, r), 0u) << "register 0x" << std::hex << r;
  }
  EXPECT_EQ(Reg(dev, kRegDeviceId), kDeviceIdValue);
  EXPECT_TRUE(dev.TakeInterrupts().empty());
}

TEST(EmuWorkTest, CopyMovesBytesAndRaisesTheCompletionVector) {
  EmuDevice dev(kDma);
  Enable(dev);
  for (int i = 0; i < 4096; ++i) dev.dma().data()[0x10000 + i] = static_cast<uint8_t>(i * 3);
  EXPECT_EQ(RunOne(dev, {kOpCopy, kFlagInterrupt, 4096, 0x10000, 0x20000}), kStatusOk);
  EXPECT_EQ(0, std::memcmp(dev.dma().data() + 0x20000, dev.dma().data() + 0x10000, 4096));
  EXPECT_EQ(Reg(dev, kRegRingHead), 1u);
  EXPECT_EQ(Reg(dev, kRegCompletedLo), 1u);
  EXPECT_EQ(Reg(dev, kRegIntCause), kIntCompletion);
  std::vector<Interrupt> irqs = dev.TakeInterrupts();
  ASSERT_EQ(irqs.size(), 1u);
  EXPECT_EQ(irqs[0].vector, 0);
  EXPECT_EQ(irqs[0].cause, kIntCompletion);
  EXPECT_EQ(irqs[0].data, 0u);
  EXPECT_EQ(dev.dma().Load64(kRing + kDescCookie), 0x600Du);  // the driver's field is untouched
}

TEST(EmuWorkTest, FillWritesTheLowByteOfValue) {
  EmuDevice dev(kDma);
  Enable(dev);
  EXPECT_EQ(RunOne(dev, {kOpFill, 0, 100, 0, 0x30000, 0, 0x1234}), kStatusOk);
  EXPECT_EQ(dev.dma().data()[0x30000], 0x34);
  EXPECT_EQ(dev.dma().data()[0x30000 + 99], 0x34);
  EXPECT_EQ(dev.dma().data()[0x30000 + 100], 0);
  EXPECT_TRUE(dev.TakeInterrupts().empty());  // no interrupt flag, no interrupt
}

TEST(EmuWorkTest, Crc32cOfTheCheckStringIsReportedInTheDescriptor) {
  EmuDevice dev(kDma);
  Enable(dev);
  std::memcpy(dev.dma().data() + 0x40000, "123456789", 9);
  EXPECT_EQ(RunOne(dev, {kOpCrc32c, kFlagInterrupt, 9, 0x40000}), kStatusOk);
  EXPECT_EQ(ResultOf(dev, 0), 0xE3069283u);
}

TEST(EmuWorkTest, XorCombinesTwoBuffers) {
  EmuDevice dev(kDma);
  Enable(dev);
  for (int i = 0; i < 256; ++i) {
    dev.dma().data()[0x50000 + i] = static_cast<uint8_t>(i);
    dev.dma().data()[0x51000 + i] = 0xF0;
  }
  EXPECT_EQ(RunOne(dev, {kOpXor, 0, 256, 0x50000, 0x52000, 0x51000}), kStatusOk);
  for (int i = 0; i < 256; ++i) ASSERT_EQ(dev.dma().data()[0x52000 + i], static_cast<uint8_t>(i ^ 0xF0)) << i;
}

TEST(EmuWorkTest, TheRingWrapsAround) {
  EmuDevice dev(kDma);
  Enable(dev, 4);
  for (uint32_t i = 0; i < 3; ++i) Put(dev, i, {kOpFill, kFlagInterrupt, 8, 0, 0x60000 + i * 8, 0, i + 1});
  Set(dev, kRegDoorbell, 3);
  for (uint32_t i = 3; i < 6; ++i) Put(dev, i % 4, {kOpFill, kFlagInterrupt, 8, 0, 0x60000 + i * 8, 0, i + 1});
  Set(dev, kRegDoorbell, 2);  // 3, 0, 1
  EXPECT_EQ(Reg(dev, kRegRingHead), 2u);
  EXPECT_EQ(Reg(dev, kRegCompletedLo), 6u);
  for (uint32_t i = 0; i < 6; ++i) EXPECT_EQ(dev.dma().data()[0x60000 + i * 8], i + 1) << i;
  std::vector<Interrupt> irqs = dev.TakeInterrupts();
  ASSERT_EQ(irqs.size(), 6u);
  EXPECT_EQ(irqs[3].data, 3u);
  EXPECT_EQ(irqs[4].data, 0u);
}

// Every bad descriptor gets an error status and leaves DMA memory (outside
// its own status/result words) exactly as it was.
TEST(EmuWorkTest, BadDescriptorsSetAnErrorAndTouchNothing) {
  struct Case {
    const char* what;
    Desc desc;
    uint32_t status;
  };
  const std::vector<Case> cases = {
      {"opcode 0", {0, kFlagInterrupt, 16, 0x10000, 0x20000}, kErrBadOpcode},
      {"opcode 5", {5, kFlagInterrupt, 16, 0x10000, 0x20000}, kErrBadOpcode},
      {"opcode 255", {255, kFlagInterrupt, 16, 0x10000, 0x20000}, kErrBadOpcode},
      {"length 0", {kOpCopy, kFlagInterrupt, 0, 0x10000, 0x20000}, kErrLength},
      {"length above max", {kOpFill, kFlagInterrupt, kMaxTransfer + 1, 0, 0}, kErrLength},
      {"dst past the end", {kOpCopy, kFlagInterrupt, 32, 0x10000, kDma - 16}, kErrAddressRange},
      {"src past the end", {kOpCopy, kFlagInterrupt, 32, kDma - 16, 0x20000}, kErrAddressRange},
      {"src2 past the end", {kOpXor, kFlagInterrupt, 32, 0x10000, 0x20000, kDma}, kErrAddressRange},
      {"fill dst wraps", {kOpFill, kFlagInterrupt, 64, 0, UINT64_MAX - 8}, kErrAddressRange},
      {"crc src wraps", {kOpCrc32c, kFlagInterrupt, 64, UINT64_MAX - 8}, kErrAddressRange},
      {"copy dst far away", {kOpCopy, kFlagInterrupt, 16, 0x10000, uint64_t{1} << 50}, kErrAddressRange},
  };
  for (const Case& c : cases) {
    EmuDevice dev(kDma);
    Enable(dev);
    for (uint64_t i = 0; i < kDma; i += 7) dev.dma().data()[i] = static_cast<uint8_t>(i);
    Put(dev, 0, c.desc);
    std::vector<uint8_t> before(dev.dma().data(), dev.dma().data() + kDma);
    Set(dev, kRegDoorbell, 1);
    EXPECT_EQ(StatusOf(dev, 0), c.status) << c.what;
    EXPECT_EQ(Reg(dev, kRegErrorCode), c.status) << c.what;
    EXPECT_EQ(Reg(dev, kRegErrorIndex), 0u) << c.what;
    EXPECT_EQ(Reg(dev, kRegStatus) & kStatusError, kStatusError) << c.what;
    EXPECT_EQ(Reg(dev, kRegCompletedLo), 0u) << c.what;
    EXPECT_EQ(Reg(dev, kRegRingHead), 1u) << c.what;  // consumed, with its error
    std::vector<Interrupt> irqs = dev.TakeInterrupts();
    ASSERT_EQ(irqs.size(), 1u) << c.what;
    EXPECT_EQ(irqs[0].vector, 1) << c.what;
    // Only the status word changed.
    std::vector<uint8_t> after(dev.dma().data(), dev.dma().data() + kDma);
    std::memcpy(&after[kRing + kDescStatus], &before[kRing + kDescStatus], 4);
    EXPECT_TRUE(after == before) << c.what;
  }
}

TEST(EmuWorkTest, AnErrorDoesNotStopLaterDescriptors) {
  EmuDevice dev(kDma);
  Enable(dev);
  Put(dev, 0, {9, kFlagInterrupt, 16});
  Put(dev, 1, {kOpFill, kFlagInterrupt, 16, 0, 0x70000, 0, 0xAB});
  Set(dev, kRegDoorbell, 2);
  EXPECT_EQ(StatusOf(dev, 0), kErrBadOpcode);
  EXPECT_EQ(StatusOf(dev, 1), kStatusOk);
  EXPECT_EQ(dev.dma().data()[0x70000], 0xAB);
  std::vector<Interrupt> irqs = dev.TakeInterrupts();
  ASSERT_EQ(irqs.size(), 2u);
  EXPECT_EQ(irqs[0].vector, 1);
  EXPECT_EQ(irqs[1].vector, 0);
  EXPECT_EQ(irqs[1].data, 1u);
}

TEST(EmuDeviceTest, ReadBar0GivesWhatReadingEachRegisterGivesAndRefusesWhatRead32Refuses) {
  EmuDevice dev(kDma);
  Enable(dev);
  Put(dev, 0, {kOpFill, kFlagInterrupt, 64, 0, 0x8000, 0, 0x5a});
  Set(dev, kRegScratch, 0x12345678);
  Set(dev, kRegDoorbell, 1);
  std::vector<uint8_t> bulk(kBar0Size);
  ASSERT_TRUE(dev.ReadBar0(0, bulk.size(), bulk.data()).ok());
  for (uint64_t at = 0; at < kBar0Size; at += 4) {
    uint32_t word = 0;
    std::memcpy(&word, bulk.data() + at, 4);
    ASSERT_EQ(word, Reg(dev, at)) << "register 0x" << std::hex << at;
  }
  uint8_t buf[8];
  EXPECT_EQ(dev.ReadBar0(2, 4, buf).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev.ReadBar0(0, 6, buf).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dev.ReadBar0(kBar0Size - 4, 8, buf).code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace rpci::agent::emu
