#include "agent/emu/emu_device.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "agent/emu/crc32c.h"

namespace rpci::agent::emu {

EmuDevice::EmuDevice(size_t dma_size) : bar0_(kBar0Size), dma_(dma_size) {
  std::lock_guard<std::mutex> lock(mu_);
  ResetLocked();
}

absl::StatusOr<uint32_t> EmuDevice::Read32(uint64_t offset) {
  if (offset % 4 != 0) return absl::InvalidArgumentError(absl::StrFormat("rpci-emu: unaligned read at 0x%x", offset));
  if (!bar0_.Contains(offset, 4)) {
    return absl::OutOfRangeError(absl::StrFormat("rpci-emu: read at 0x%x beyond BAR0 (0x%x)", offset, kBar0Size));
  }
  std::lock_guard<std::mutex> lock(mu_);
  return bar0_.Load32(offset);
}

absl::Status EmuDevice::ReadBar0(uint64_t offset, uint64_t len, uint8_t* out) {
  if (offset % 4 != 0 || len % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("rpci-emu: unaligned read of %u bytes at 0x%x", len, offset));
  }
  if (!bar0_.Contains(offset, len)) {
    return absl::OutOfRangeError(absl::StrFormat("rpci-emu: read of %u bytes at 0x%x beyond BAR0 (0x%x)", len,
                                                 offset, kBar0Size));
  }
  std::lock_guard<std::mutex> lock(mu_);
  return bar0_.Read(offset, out, len);
}

absl::Status EmuDevice::Write32(uint64_t offset, uint32_t value) {
  if (offset % 4 != 0) return absl::InvalidArgumentError(absl::StrFormat("rpci-emu: unaligned write at 0x%x", offset));
  if (!bar0_.Contains(offset, 4)) {
    return absl::OutOfRangeError(absl::StrFormat("rpci-emu: write at 0x%x beyond BAR0 (0x%x)", offset, kBar0Size));
  }
  std::lock_guard<std::mutex> lock(mu_);
  const bool enabled = (bar0_.Load32(kRegControl) & kControlEnable) != 0;
  switch (offset) {
    case kRegControl:
      if (value & kControlReset) {
        ResetLocked();
      } else {
        EnableLocked((value & kControlEnable) != 0);
      }
      break;
    case kRegRingBaseLo:
    case kRegRingBaseHi:
    case kRegRingSize:
      // The ring is fixed while enabled; a driver disables it to move it.
      if (!enabled) bar0_.Store32(offset, value);
      break;
    case kRegDoorbell:
      DoorbellLocked(value);
      break;
    case kRegIntCause:
      bar0_.Store32(kRegIntCause, bar0_.Load32(kRegIntCause) & ~value);
      SyncStatusLocked();
      break;
    case kRegIntMask: {
      const uint32_t old_mask = bar0_.Load32(kRegIntMask);
      const uint32_t mask = value & (kIntCompletion | kIntError);
      bar0_.Store32(kRegIntMask, mask);
      // A cause pending while masked is delivered when unmasked (MSI-X
      // pending-bit semantics).
      const uint32_t cause = bar0_.Load32(kRegIntCause);
      for (uint32_t bit : {kIntCompletion, kIntError}) {
        if ((mask & bit) && !(old_mask & bit) && (cause & bit)) {
          pending_.push_back({static_cast<uint16_t>(bit == kIntCompletion ? 0 : 1), bit, 0});
        }
      }
      break;
    }
    case kRegScratch:
      bar0_.Store32(offset, value);
      break;
    default:
      // Read-only and unassigned registers ignore writes.
      break;
  }
  return absl::OkStatus();
}

std::vector<Interrupt> EmuDevice::TakeInterrupts() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Interrupt> out;
  out.swap(pending_);
  return out;
}

void EmuDevice::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  ResetLocked();
  std::memset(dma_.data(), 0, dma_.size());
}

void EmuDevice::ResetLocked() {
  std::memset(bar0_.data(), 0, bar0_.size());
  bar0_.Store32(kRegDeviceId, kDeviceIdValue);
  bar0_.Store32(kRegVersion, kVersionValue);
  bar0_.Store32(kRegDmaSize, static_cast<uint32_t>(std::min<uint64_t>(dma_.size(), 0xFFFFFFFFu)));
  completed_ = 0;
  pending_.clear();
  SyncStatusLocked();
}

void EmuDevice::SyncStatusLocked() {
  uint32_t status = kStatusReady;
  if (bar0_.Load32(kRegControl) & kControlEnable) status |= kStatusEnabled;
  if (bar0_.Load32(kRegIntCause) & kIntError) status |= kStatusError;
  bar0_.Store32(kRegStatus, status);
}

void EmuDevice::EnableLocked(bool enable) {
  if (!enable) {
    bar0_.Store32(kRegControl, 0);
    SyncStatusLocked();
    return;
  }
  if (bar0_.Load32(kRegControl) & kControlEnable) return;
  const uint64_t base = (uint64_t{bar0_.Load32(kRegRingBaseHi)} << 32) | bar0_.Load32(kRegRingBaseLo);
  const uint32_t size = bar0_.Load32(kRegRingSize);
  const bool power_of_two = size != 0 && (size & (size - 1)) == 0;
  if (!power_of_two || size > kMaxRingSize || base % kRingAlign != 0 || !dma_.Contains(base, size * kDescSize)) {
    FailLocked(kErrBadRing, 0);
    return;
  }
  bar0_.Store32(kRegControl, kControlEnable);
  bar0_.Store32(kRegRingHead, 0);
  bar0_.Store32(kRegRingTail, 0);
  SyncStatusLocked();
}

void EmuDevice::RaiseLocked(uint32_t cause, uint64_t data) {
  bar0_.Store32(kRegIntCause, bar0_.Load32(kRegIntCause) | cause);
  if (bar0_.Load32(kRegIntMask) & cause) {
    pending_.push_back({static_cast<uint16_t>(cause == kIntCompletion ? 0 : 1), cause, data});
  }
  SyncStatusLocked();
}

void EmuDevice::FailLocked(uint32_t code, uint32_t index) {
  bar0_.Store32(kRegErrorCode, code);
  bar0_.Store32(kRegErrorIndex, index);
  RaiseLocked(kIntError, index);
}

void EmuDevice::DoorbellLocked(uint32_t tail) {
  if (!(bar0_.Load32(kRegControl) & kControlEnable)) {
    FailLocked(kErrNotEnabled, tail);
    return;
  }
  const uint32_t size = bar0_.Load32(kRegRingSize);
  if (tail >= size) {
    FailLocked(kErrBadDoorbell, tail);
    return;
  }
  bar0_.Store32(kRegRingTail, tail);
  const uint64_t base = (uint64_t{bar0_.Load32(kRegRingBaseHi)} << 32) | bar0_.Load32(kRegRingBaseLo);
  uint32_t head = bar0_.Load32(kRegRingHead);
  while (head != tail) {
    // Enable checked that the whole ring lies in DMA space.
    const uint64_t desc = base + uint64_t{head} * kDescSize;
    uint32_t result = 0;
    uint8_t flags = 0;
    const uint32_t status = ExecuteLocked(desc, &result, &flags);
    dma_.Store32(desc + kDescResult, result);
    dma_.Store32(desc + kDescStatus, status);
    if (status == kStatusOk) {
      ++completed_;
      if (flags & kFlagInterrupt) RaiseLocked(kIntCompletion, head);
    } else {
      FailLocked(status, head);
    }
    head = (head + 1) & (size - 1);
  }
  bar0_.Store32(kRegRingHead, head);
  bar0_.Store32(kRegCompletedLo, static_cast<uint32_t>(completed_));
  bar0_.Store32(kRegCompletedHi, static_cast<uint32_t>(completed_ >> 32));
}

uint32_t EmuDevice::ExecuteLocked(uint64_t desc, uint32_t* result, uint8_t* flags) {
  uint8_t opcode = 0;
  (void)dma_.Read(desc + kDescOpcode, &opcode, 1);
  (void)dma_.Read(desc + kDescFlags, flags, 1);
  const uint32_t length = dma_.Load32(desc + kDescLength);
  const uint64_t src = dma_.Load64(desc + kDescSrc);
  const uint64_t dst = dma_.Load64(desc + kDescDst);
  const uint64_t src2 = dma_.Load64(desc + kDescSrc2);
  const uint8_t fill = static_cast<uint8_t>(dma_.Load64(desc + kDescValue));

  if (opcode < kOpCopy || opcode > kOpXor) return kErrBadOpcode;
  if (length == 0 || length > kMaxTransfer) return kErrLength;
  const bool reads_src = opcode != kOpFill;
  const bool writes_dst = opcode != kOpCrc32c;
  if ((reads_src && !dma_.Contains(src, length)) || (writes_dst && !dma_.Contains(dst, length)) ||
      (opcode == kOpXor && !dma_.Contains(src2, length))) {
    return kErrAddressRange;
  }
  uint8_t* mem = dma_.data();
  switch (opcode) {
    case kOpCopy:
      std::memmove(mem + dst, mem + src, length);
      break;
    case kOpFill:
      std::memset(mem + dst, fill, length);
      break;
    case kOpCrc32c:
      *result = Crc32c(mem + src, length);
      break;
    case kOpXor:
      for (uint32_t i = 0; i < length; ++i) mem[dst + i] = mem[src + i] ^ mem[src2 + i];
      break;
  }
  return kStatusOk;
}

}  // namespace rpci::agent::emu
