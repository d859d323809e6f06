#ifndef RPCI_SESSION_WIRE_H_
#define RPCI_SESSION_WIRE_H_

// Byte layout of a memory-mirroring session's shared memory and messages.
// Everything here is little-endian, fixed-size and versioned. Encoders never
// fail; every decoder takes bytes from the peer (outside input) and returns a
// Status naming what is wrong instead of trusting them. All functions are pure
// and thread-compatible. docs/sessions.md describes the protocol.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "session/session_id.h"

namespace rpci::session {

// 2: frames carry a counter and a MAC instead of the key; attach, close and
// status prove the key by challenge-response (session/frame_auth.h).
inline constexpr uint32_t kProtocolVersion = 2;

// ---- regions and the anchor record ----

enum class RegionKind : uint8_t {
  kAnchor = 1,
  kBar = 2,
  kDma = 3,
  kMmioRing = 4,
  kCompletionRing = 5,
};
inline constexpr uint8_t kMaxRegionKind = 5;

// Access the *peer* has to a region.
enum Access : uint8_t {
  kAccessRead = 1,
  kAccessWrite = 2,
};

// One registered region: where it is in the owner's registered address space,
// its size, the fabric memory key and what the peer may do with it.
struct RegionDesc {
  RegionKind kind = RegionKind::kAnchor;
  uint8_t access = kAccessRead;
  uint16_t index = 0;  // BAR number for kBar, else 0
  uint64_t address = 0;
  uint64_t size = 0;
  uint64_t key = 0;

  bool operator==(const RegionDesc& o) const {
    return kind == o.kind && access == o.access && index == o.index && address == o.address &&
           size == o.size && key == o.key;
  }
};

// The anchor record sits at offset 0 of the anchor region and names every
// region of one side of the session.
inline constexpr uint64_t kAnchorMagic = 0x48434e4149435052ull;  // "RPCIANCH"
inline constexpr size_t kAnchorOffset = 0;
inline constexpr size_t kAnchorHeaderSize = 24;
inline constexpr size_t kRegionDescSize = 32;
inline constexpr size_t kMaxRegions = 32;
inline constexpr size_t kAnchorRegionSize = 4096;

struct Anchor {
  uint32_t version = kProtocolVersion;
  SessionId session_id;
  std::vector<RegionDesc> regions;
};

std::vector<uint8_t> EncodeAnchor(const Anchor& anchor);
// Rejects a wrong magic or version, a truncated record, more than kMaxRegions,
// unknown kinds or access bits, empty or wrapping regions and duplicate
// (kind, index) pairs. Address ranges may overlap: each region has its own
// key, and providers without FI_MR_VIRT_ADDR number every region from 0.
absl::StatusOr<Anchor> DecodeAnchor(absl::Span<const uint8_t> bytes);

// Validates one region descriptor on its own (also used for proto Regions).
absl::Status ValidateRegion(const RegionDesc& region);

// ---- MMIO write ring (compute -> device) ----

// One posted register write. Sequence numbers start at 1 and are contiguous
// for the life of the session.
struct MmioWrite {
  uint64_t seq = 0;
  uint8_t bar = 0;
  uint8_t width = 4;  // 4 or 8 bytes
  uint64_t offset = 0;
  uint64_t value = 0;

  bool operator==(const MmioWrite& o) const {
    return seq == o.seq && bar == o.bar && width == o.width && offset == o.offset && value == o.value;
  }
};
inline constexpr size_t kMmioEntrySize = 32;

void EncodeMmioWrite(const MmioWrite& w, uint8_t* out);  // writes kMmioEntrySize bytes
// Rejects seq 0, widths other than 4/8, offsets not aligned to the width,
// a 32-bit write whose value does not fit and nonzero reserved bytes.
absl::StatusOr<MmioWrite> DecodeMmioWrite(absl::Span<const uint8_t> bytes);

// ---- completion / interrupt ring (device -> compute) ----

// One emulated MSI-X message: the vector, the device's interrupt cause and the
// highest MMIO write sequence applied when it was raised.
struct Completion {
  uint64_t seq = 0;
  uint16_t vector = 0;
  uint32_t cause = 0;
  uint64_t applied_mmio_seq = 0;
  uint64_t data = 0;

  bool operator==(const Completion& o) const {
    return seq == o.seq && vector == o.vector && cause == o.cause &&
           applied_mmio_seq == o.applied_mmio_seq && data == o.data;
  }
};
inline constexpr size_t kCompletionEntrySize = 32;
inline constexpr uint16_t kMaxMsixVectors = 2048;  // PCIe MSI-X table limit

void EncodeCompletion(const Completion& c, uint8_t* out);  // kCompletionEntrySize bytes
absl::StatusOr<Completion> DecodeCompletion(absl::Span<const uint8_t> bytes);

// ---- ring header (head/tail pointers) ----

// First kRingHeaderSize bytes of each ring region; entries follow. `head` is
// the count of entries consumed, `tail` the count produced; slot of entry n
// (1-based sequence) is (n - 1) % capacity.
struct RingHeader {
  uint32_t capacity = 0;    // entries, power of two
  uint32_t entry_size = 0;  // bytes
  uint64_t head = 0;
  uint64_t tail = 0;
};
inline constexpr size_t kRingHeaderSize = 64;
inline constexpr size_t kRingHeadOffset = 8;   // where `head` lives, for one-sided updates
inline constexpr size_t kRingTailOffset = 16;  // where `tail` lives
// Completion ring only: the mirror generation, a seqlock word the agent
// RMA-writes odd before a BAR mirror push and even after it (ordered writes),
// so a reader of the mirror can tell a push was landing and read again.
inline constexpr size_t kRingMirrorGenOffset = 24;
inline constexpr uint32_t kMaxRingCapacity = 1u << 16;

void EncodeRingHeader(const RingHeader& h, uint8_t* out);  // kRingHeaderSize bytes
// Rejects a capacity that is zero, not a power of two or above
// kMaxRingCapacity, a wrong entry size, head > tail and tail - head > capacity.
absl::StatusOr<RingHeader> DecodeRingHeader(absl::Span<const uint8_t> bytes, uint32_t expected_entry_size);

inline size_t RingRegionSize(uint32_t capacity, size_t entry_size) {
  return kRingHeaderSize + static_cast<size_t>(capacity) * entry_size;
}
inline size_t RingSlotOffset(uint64_t seq, uint32_t capacity, size_t entry_size) {
  return kRingHeaderSize + static_cast<size_t>((seq - 1) % capacity) * entry_size;
}

// ---- messages (FI_MSG frames) ----

enum class FrameType : uint16_t {
  kKick = 1,       // client: MMIO ring tail advanced to arg0; arg1 = completions consumed;
                   // payload (optional): the MMIO entries up to arg0 (EncodeMmioEntries)
  kEvent = 2,      // agent: arg0 = applied MMIO seq, arg1 = completion ring tail;
                   // payload (optional): completions and mirror patches (EventPayload)
  kRefresh = 3,    // client: push BAR mirror now; arg0 = request id
  kRefreshed = 4,  // agent: mirror pushed; arg0 = request id, arg1 = applied MMIO seq
  kError = 5,      // agent: request refused; arg0 = ErrorCode, arg1 = offending seq/id
  kHeartbeat = 6,  // either side; arg0 = sender's clock in ms
  kClose = 7,      // either side: session is over
  kMapFromDevice = 8,  // client: device may write DMA [arg0, arg0+arg1); push it back before completions
  kUnmap = 9,          // client: forget the mapping starting at arg0
};
inline constexpr uint16_t kMaxFrameType = 9;

enum class ErrorCode : uint64_t {
  kBadKey = 1,  // (version 1; version 2 never answers a frame it cannot authenticate)
  kStaleSession = 2,
  kOutOfBounds = 3,
  kReadOnly = 4,
  kBadSequence = 5,
  kMalformed = 6,
  kOverLimit = 7,  // a per-session cap (mapped DMA ranges or bytes)
};

// A control frame: magic u32, version u16, type u16, session id u64, counter
// u64, arg0 u64, arg1 u64, then (kKick and kEvent only) a payload of up to
// kMaxFramePayload bytes, a multiple of 8, then a 16-byte MAC over every byte
// before it (HMAC-SHA256 under the sender's direction key, truncated). The
// counter starts at 1 per direction and attach and only grows. The key never
// travels: FrameChannel (frame_auth.h) seals and checks frames. A payload
// lets one message carry a doorbell's MMIO entries or a completion's entries
// and register changes, so neither needs an RMA of its own.
struct Frame {
  FrameType type = FrameType::kKick;
  SessionId session_id;
  uint64_t counter = 0;
  uint64_t arg0 = 0;
  uint64_t arg1 = 0;
  std::string payload;  // empty for a plain 56-byte frame
};
inline constexpr uint32_t kFrameMagic = 0x52464352;  // "RCFR"
inline constexpr size_t kFrameSize = 56;  // without payload
inline constexpr size_t kFrameHeaderSize = 40;
inline constexpr size_t kFrameMacOffset = 40;  // without payload; else header + payload
inline constexpr size_t kFrameMacSize = 16;
inline constexpr size_t kMaxFramePayload = 1024;
// The largest frame: all a session's endpoints carry as messages (bulk data
// moves by RMA), so their fabric's max_message and the provider's eager
// buffers are sized to it (docs/benchmarks.md, "Attach").
inline constexpr size_t kMaxFrameBytes = kFrameSize + kMaxFramePayload;
// MMIO entries a kick can carry (kMaxFramePayload / kMmioEntrySize).
inline constexpr size_t kMaxInlineWrites = kMaxFramePayload / 32;

// The frame with a zero MAC field (FrameChannel::Seal fills it).
std::array<uint8_t, kFrameSize> EncodeFrame(const Frame& f);
// Parses the header; the MAC is FrameChannel's to check. FAILED_PRECONDITION
// naming both versions for a frame of another protocol version (a version-1
// frame, which carried the key, is refused this way); INVALID_ARGUMENT for a
// wrong length or magic, an unknown type or counter 0.
absl::StatusOr<Frame> DecodeFrame(absl::Span<const uint8_t> bytes);

// A kick's payload: consecutive MMIO entries (kMmioEntrySize bytes each).
std::string EncodeMmioEntries(absl::Span<const MmioWrite> writes);
// Rejects a size that is not a whole number of entries, more than
// kMaxInlineWrites, an entry DecodeMmioWrite rejects and sequence numbers
// that are not consecutive.
absl::StatusOr<std::vector<MmioWrite>> DecodeMmioEntries(absl::Span<const uint8_t> bytes);

// Bytes of a BAR mirror that changed: `bytes` at `offset` in BAR `bar`.
struct MirrorPatch {
  uint16_t bar = 0;
  uint32_t offset = 0;
  std::string bytes;
  bool operator==(const MirrorPatch& o) const { return bar == o.bar && offset == o.offset && bytes == o.bytes; }
};
// An event's payload: the completions it delivers (consecutive sequence
// numbers, ending at the event's ring tail) and the mirror patches the
// client applies before them. Layout: n_completions u16, n_patches u16,
// reserved u32, the completion entries, then each patch as bar u16, length
// u16, offset u32, the bytes, zero-padded to 8.
struct EventPayload {
  std::vector<Completion> completions;
  std::vector<MirrorPatch> patches;
};
// Bytes EncodeEventPayload needs for a patch of `len` bytes.
inline size_t PatchWireSize(size_t len) { return 8 + (len + 7) / 8 * 8; }
std::string EncodeEventPayload(const EventPayload& payload);
// Rejects truncated or trailing bytes, nonzero reserved or padding bytes,
// an empty patch and completions DecodeCompletion rejects. Bounds against
// the mirror are the receiver's to check.
absl::StatusOr<EventPayload> DecodeEventPayload(absl::Span<const uint8_t> bytes);

const char* ErrorCodeName(ErrorCode code);
const char* RegionKindName(RegionKind kind);

}  // namespace rpci::session

#endif  // RPCI_SESSION_WIRE_H_
