#ifndef RPCI_AGENT_EMU_EMU_DEVICE_H_
#define RPCI_AGENT_EMU_EMU_DEVICE_H_

// rpci-emu: a software PCIe device model. BAR0 is a register file, work comes
// as 64-byte descriptors in a ring in DMA space, and the device copies,
// fills, checksums (CRC32C) and XORs DMA buffers. docs/rpci-emu.md is the
// specification: register map, descriptor layout, state machine.

#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/emu/memory_space.h"
#include "agent/session/session_device.h"

namespace rpci::agent::emu {

// BAR0 register offsets (32-bit registers, little-endian).
inline constexpr uint64_t kRegDeviceId = 0x00;     // RO  kDeviceIdValue
inline constexpr uint64_t kRegVersion = 0x04;      // RO  kVersionValue
inline constexpr uint64_t kRegStatus = 0x08;       // RO  kStatus* bits
inline constexpr uint64_t kRegControl = 0x0C;      // RW  kControl* bits
inline constexpr uint64_t kRegRingBaseLo = 0x10;   // RW  ring DMA address, low
inline constexpr uint64_t kRegRingBaseHi = 0x14;   // RW  ring DMA address, high
inline constexpr uint64_t kRegRingSize = 0x18;     // RW  descriptors in the ring
inline constexpr uint64_t kRegRingHead = 0x1C;     // RO  next descriptor the device takes
inline constexpr uint64_t kRegRingTail = 0x20;     // RO  last doorbell value
inline constexpr uint64_t kRegDoorbell = 0x24;     // WO  new tail; processes head..tail
inline constexpr uint64_t kRegIntCause = 0x28;     // RW1C kInt* bits
inline constexpr uint64_t kRegIntMask = 0x2C;      // RW  kInt* bits enabled
inline constexpr uint64_t kRegErrorCode = 0x30;    // RO  last ErrorCode
inline constexpr uint64_t kRegErrorIndex = 0x34;   // RO  ring index of the last error
inline constexpr uint64_t kRegCompletedLo = 0x38;  // RO  descriptors completed OK, low
inline constexpr uint64_t kRegCompletedHi = 0x3C;  // RO  descriptors completed OK, high
inline constexpr uint64_t kRegScratch = 0x40;      // RW  no side effects
inline constexpr uint64_t kRegDmaSize = 0x44;      // RO  DMA space size (bytes, capped at 4 GiB - 1)
inline constexpr uint64_t kBar0Size = 4096;

inline constexpr uint32_t kDeviceIdValue = 0x52504349;  // "RPCI"
inline constexpr uint32_t kVersionValue = 0x00010000;   // 1.0

inline constexpr uint32_t kStatusReady = 1u << 0;
inline constexpr uint32_t kStatusEnabled = 1u << 1;
inline constexpr uint32_t kStatusError = 1u << 2;

inline constexpr uint32_t kControlEnable = 1u << 0;
inline constexpr uint32_t kControlReset = 1u << 1;

inline constexpr uint32_t kIntCompletion = 1u << 0;  // MSI-X vector 0
inline constexpr uint32_t kIntError = 1u << 1;       // MSI-X vector 1

inline constexpr uint32_t kMaxRingSize = 4096;
inline constexpr uint32_t kRingAlign = 64;
inline constexpr uint32_t kMaxTransfer = 16u << 20;

// Descriptor layout: 64 bytes, little-endian.
inline constexpr uint64_t kDescSize = 64;
inline constexpr uint64_t kDescOpcode = 0x00;  // u8  Opcode
inline constexpr uint64_t kDescFlags = 0x01;   // u8  kFlag* bits
inline constexpr uint64_t kDescLength = 0x04;  // u32 bytes
inline constexpr uint64_t kDescSrc = 0x08;     // u64 source (COPY, CRC32C, XOR)
inline constexpr uint64_t kDescDst = 0x10;     // u64 destination (COPY, FILL, XOR)
inline constexpr uint64_t kDescSrc2 = 0x18;    // u64 second source (XOR)
inline constexpr uint64_t kDescValue = 0x20;   // u64 fill byte in bits 0..7 (FILL)
inline constexpr uint64_t kDescStatus = 0x28;  // u32 written by the device: DescStatus
inline constexpr uint64_t kDescResult = 0x2C;  // u32 written by the device: CRC32C
inline constexpr uint64_t kDescCookie = 0x30;  // u64 the driver's, never touched

inline constexpr uint8_t kFlagInterrupt = 1u << 0;

enum Opcode : uint8_t { kOpCopy = 1, kOpFill = 2, kOpCrc32c = 3, kOpXor = 4 };

// Descriptor status and the ERROR_CODE register share these values.
enum DescStatus : uint32_t {
  kStatusPending = 0,  // as the driver writes it
  kStatusOk = 1,
  kErrBadOpcode = 0x81,
  kErrAddressRange = 0x82,
  kErrLength = 0x83,
  kErrBadRing = 0x84,     // ERROR_CODE only: ring registers invalid
  kErrNotEnabled = 0x85,  // ERROR_CODE only: doorbell while disabled
  kErrBadDoorbell = 0x86, // ERROR_CODE only: tail >= ring size
};

// An emulated MSI-X message: cause is the kInt* bit, data the ring index of
// the descriptor (completion or error).
using Interrupt = SessionDevice::Interrupt;

// The device. Register accesses are the only way in; work happens during the
// doorbell write. Thread-safe (one mutex).
class EmuDevice {
 public:
  // REQUIRES: dma_size > 0.
  explicit EmuDevice(size_t dma_size);
  EmuDevice(const EmuDevice&) = delete;
  EmuDevice& operator=(const EmuDevice&) = delete;

  // 32-bit register access at a 4-aligned BAR0 offset; INVALID_ARGUMENT when
  // unaligned, OUT_OF_RANGE beyond BAR0. Unassigned offsets read 0 and ignore
  // writes; read-only registers ignore writes; DOORBELL reads 0.
  absl::StatusOr<uint32_t> Read32(uint64_t offset);
  absl::Status Write32(uint64_t offset, uint32_t value);
  // BAR0 bytes [offset, offset + len) into `out`, whole registers, as one
  // snapshot (one lock, where Read32 word by word takes it per register):
  // what a session's mirror push reads after every job. Same errors as Read32.
  absl::Status ReadBar0(uint64_t offset, uint64_t len, uint8_t* out);

  // Interrupts raised (cause bit set while unmasked) since the last call.
  std::vector<Interrupt> TakeInterrupts();

  // Between tenants: registers to their power-on values (as CONTROL.RESET),
  // pending interrupts dropped and the whole DMA space zeroed.
  void Reset();

  // The register file as a session mirrors it: BAR0's current values.
  // Callers hold no lock; read it only between register accesses.
  const BarSpace& bar0() const { return bar0_; }
  DmaSpace& dma() { return dma_; }

 private:
  void ResetLocked();
  void EnableLocked(bool enable);
  void DoorbellLocked(uint32_t tail);
  // Runs one descriptor; returns its DescStatus and sets *result.
  uint32_t ExecuteLocked(uint64_t desc_addr, uint32_t* result, uint8_t* flags);
  void RaiseLocked(uint32_t cause, uint64_t data);
  void FailLocked(uint32_t code, uint32_t index);
  void SyncStatusLocked();

  std::mutex mu_;
  BarSpace bar0_;
  DmaSpace dma_;
  std::vector<Interrupt> pending_;
  uint64_t completed_ = 0;
};

}  // namespace rpci::agent::emu

#endif  // RPCI_AGENT_EMU_EMU_DEVICE_H_
