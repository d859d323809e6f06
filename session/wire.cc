#include "session/wire.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_format.h"

namespace rpci::session {
namespace {

void Put16(uint8_t* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool AllZero(const uint8_t* p, size_t n) {
  return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

absl::Status Malformed(const char* what, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrFormat("session %s: %s", what, why));
}

}  // namespace

const char* RegionKindName(RegionKind kind) {
  switch (kind) {
    case RegionKind::kAnchor: return "anchor";
    case RegionKind::kBar: return "bar";
    case RegionKind::kDma: return "dma";
    case RegionKind::kMmioRing: return "mmio_ring";
    case RegionKind::kCompletionRing: return "completion_ring";
  }
  return "unknown";
}

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadKey: return "bad_key";
    case ErrorCode::kStaleSession: return "stale_session";
    case ErrorCode::kOutOfBounds: return "out_of_bounds";
    case ErrorCode::kReadOnly: return "read_only";
    case ErrorCode::kBadSequence: return "bad_sequence";
    case ErrorCode::kMalformed: return "malformed";
    case ErrorCode::kOverLimit: return "over_limit";
  }
  return "unknown";
}

absl::Status ValidateRegion(const RegionDesc& r) {
  const uint8_t kind = static_cast<uint8_t>(r.kind);
  if (kind == 0 || kind > kMaxRegionKind) {
    return Malformed("region", absl::StrFormat("unknown kind %d", kind));
  }
  if (r.access == 0 || (r.access & ~(kAccessRead | kAccessWrite)) != 0) {
    return Malformed("region", absl::StrFormat("%s: invalid access bits 0x%x", RegionKindName(r.kind), r.access));
  }
  if (r.size == 0) return Malformed("region", absl::StrFormat("%s: size is zero", RegionKindName(r.kind)));
  if (r.address + r.size < r.address) {
    return Malformed("region", absl::StrFormat("%s: address 0x%x + size %u wraps", RegionKindName(r.kind),
                                               r.address, r.size));
  }
  if (r.kind != RegionKind::kBar && r.index != 0) {
    return Malformed("region", absl::StrFormat("%s: index %d on a non-BAR region", RegionKindName(r.kind), r.index));
  }
  if (r.kind == RegionKind::kBar && r.index > 5) {
    return Malformed("region", absl::StrFormat("bar index %d out of range 0..5", r.index));
  }
  return absl::OkStatus();
}

std::vector<uint8_t> EncodeAnchor(const Anchor& anchor) {
  std::vector<uint8_t> out(kAnchorHeaderSize + anchor.regions.size() * kRegionDescSize, 0);
  Put64(&out[0], kAnchorMagic);
  Put32(&out[8], anchor.version);
  Put32(&out[12], static_cast<uint32_t>(anchor.regions.size()));
  Put64(&out[16], anchor.session_id.value());
  for (size_t i = 0; i < anchor.regions.size(); ++i) {
    const RegionDesc& r = anchor.regions[i];
    uint8_t* p = &out[kAnchorHeaderSize + i * kRegionDescSize];
    p[0] = static_cast<uint8_t>(r.kind);
    p[1] = r.access;
    Put16(p + 2, r.index);
    Put64(p + 8, r.address);
    Put64(p + 16, r.size);
    Put64(p + 24, r.key);
  }
  return out;
}

absl::StatusOr<Anchor> DecodeAnchor(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < kAnchorHeaderSize) {
    return Malformed("anchor", absl::StrFormat("truncated: %u bytes, header needs %u", bytes.size(),
                                               kAnchorHeaderSize));
  }
  const uint8_t* p = bytes.data();
  if (Get64(p) != kAnchorMagic) return Malformed("anchor", "bad magic");
  Anchor anchor;
  anchor.version = Get32(p + 8);
  if (anchor.version != kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "session anchor: protocol version %u, this build speaks %u", anchor.version, kProtocolVersion));
  }
  const uint32_t count = Get32(p + 12);
  anchor.session_id = SessionId(Get64(p + 16));
  if (anchor.session_id.empty()) return Malformed("anchor", "session id is zero");
  if (count > kMaxRegions) {
    return Malformed("anchor", absl::StrFormat("%u regions, at most %u allowed", count, kMaxRegions));
  }
  if (bytes.size() < kAnchorHeaderSize + count * kRegionDescSize) {
    return Malformed("anchor", absl::StrFormat("truncated: %u regions need %u bytes, got %u", count,
                                               kAnchorHeaderSize + count * kRegionDescSize, bytes.size()));
  }
  std::set<std::pair<uint8_t, uint16_t>> seen;
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* q = p + kAnchorHeaderSize + i * kRegionDescSize;
    if (!AllZero(q + 4, 4)) return Malformed("anchor", absl::StrFormat("region %u: reserved bytes set", i));
    RegionDesc r;
    r.kind = static_cast<RegionKind>(q[0]);
    r.access = q[1];
    r.index = Get16(q + 2);
    r.address = Get64(q + 8);
    r.size = Get64(q + 16);
    r.key = Get64(q + 24);
    if (absl::Status s = ValidateRegion(r); !s.ok()) {
      return Malformed("anchor", absl::StrFormat("region %u: %s", i, s.message()));
    }
    if (!seen.insert({q[0], r.index}).second) {
      return Malformed("anchor", absl::StrFormat("region %u: duplicate %s %u", i, RegionKindName(r.kind), r.index));
    }
    anchor.regions.push_back(r);
  }
  return anchor;
}

void EncodeMmioWrite(const MmioWrite& w, uint8_t* out) {
  std::memset(out, 0, kMmioEntrySize);
  Put64(out, w.seq);
  out[8] = w.width;
  out[9] = w.bar;
  Put64(out + 16, w.offset);
  Put64(out + 24, w.value);
}

absl::StatusOr<MmioWrite> DecodeMmioWrite(absl::Span<const uint8_t> bytes) {
  if (bytes.size() != kMmioEntrySize) {
    return Malformed("mmio write", absl::StrFormat("entry is %u bytes, want %u", bytes.size(), kMmioEntrySize));
  }
  const uint8_t* p = bytes.data();
  MmioWrite w;
  w.seq = Get64(p);
  w.width = p[8];
  w.bar = p[9];
  w.offset = Get64(p + 16);
  w.value = Get64(p + 24);
  if (w.seq == 0) return Malformed("mmio write", "sequence 0");
  if (!AllZero(p + 10, 6)) return Malformed("mmio write", absl::StrFormat("seq %u: reserved bytes set", w.seq));
  if (w.width != 4 && w.width != 8) {
    return Malformed("mmio write", absl::StrFormat("seq %u: width %u, want 4 or 8", w.seq, w.width));
  }
  if (w.bar > 5) return Malformed("mmio write", absl::StrFormat("seq %u: bar %u out of range", w.seq, w.bar));
  if (w.offset % w.width != 0) {
    return Malformed("mmio write", absl::StrFormat("seq %u: offset 0x%x not %u-byte aligned", w.seq, w.offset, w.width));
  }
  if (w.width == 4 && (w.value >> 32) != 0) {
    return Malformed("mmio write", absl::StrFormat("seq %u: 32-bit write with value 0x%x", w.seq, w.value));
  }
  return w;
}

void EncodeCompletion(const Completion& c, uint8_t* out) {
  std::memset(out, 0, kCompletionEntrySize);
  Put64(out, c.seq);
  Put16(out + 8, c.vector);
  Put32(out + 12, c.cause);
  Put64(out + 16, c.applied_mmio_seq);
  Put64(out + 24, c.data);
}

absl::StatusOr<Completion> DecodeCompletion(absl::Span<const uint8_t> bytes) {
  if (bytes.size() != kCompletionEntrySize) {
    return Malformed("completion", absl::StrFormat("entry is %u bytes, want %u", bytes.size(),
                                                   kCompletionEntrySize));
  }
  const uint8_t* p = bytes.data();
  Completion c;
  c.seq = Get64(p);
  c.vector = Get16(p + 8);
  c.cause = Get32(p + 12);
  c.applied_mmio_seq = Get64(p + 16);
  c.data = Get64(p + 24);
  if (c.seq == 0) return Malformed("completion", "sequence 0");
  if (!AllZero(p + 10, 2)) return Malformed("completion", absl::StrFormat("seq %u: reserved bytes set", c.seq));
  if (c.vector >= kMaxMsixVectors) {
    return Malformed("completion", absl::StrFormat("seq %u: vector %u >= %u", c.seq, c.vector, kMaxMsixVectors));
  }
  return c;
}

void EncodeRingHeader(const RingHeader& h, uint8_t* out) {
  std::memset(out, 0, kRingHeaderSize);
  Put32(out, h.capacity);
  Put32(out + 4, h.entry_size);
  Put64(out + kRingHeadOffset, h.head);
  Put64(out + kRingTailOffset, h.tail);
}

absl::StatusOr<RingHeader> DecodeRingHeader(absl::Span<const uint8_t> bytes, uint32_t expected_entry_size) {
  if (bytes.size() < kRingHeaderSize) {
    return Malformed("ring header", absl::StrFormat("truncated: %u bytes", bytes.size()));
  }
  const uint8_t* p = bytes.data();
  RingHeader h;
  h.capacity = Get32(p);
  h.entry_size = Get32(p + 4);
  h.head = Get64(p + kRingHeadOffset);
  h.tail = Get64(p + kRingTailOffset);
  if (h.capacity == 0 || (h.capacity & (h.capacity - 1)) != 0 || h.capacity > kMaxRingCapacity) {
    return Malformed("ring header", absl::StrFormat("capacity %u is not a power of two in 1..%u", h.capacity,
                                                    kMaxRingCapacity));
  }
  if (h.entry_size != expected_entry_size) {
    return Malformed("ring header", absl::StrFormat("entry size %u, want %u", h.entry_size, expected_entry_size));
  }
  if (h.head > h.tail) return Malformed("ring header", absl::StrFormat("head %u past tail %u", h.head, h.tail));
  if (h.tail - h.head > h.capacity) {
    return Malformed("ring header", absl::StrFormat("%u entries outstanding in a ring of %u", h.tail - h.head,
                                                    h.capacity));
  }
  return h;
}

std::array<uint8_t, kFrameSize> EncodeFrame(const Frame& f) {
  std::array<uint8_t, kFrameSize> out{};
  Put32(&out[0], kFrameMagic);
  Put16(&out[4], static_cast<uint16_t>(kProtocolVersion));
  Put16(&out[6], static_cast<uint16_t>(f.type));
  Put64(&out[8], f.session_id.value());
  Put64(&out[16], f.counter);
  Put64(&out[24], f.arg0);
  Put64(&out[32], f.arg1);
  return out;
}

absl::StatusOr<Frame> DecodeFrame(absl::Span<const uint8_t> bytes) {
  if (bytes.size() > kFrameSize && bytes.size() <= kFrameSize + kMaxFramePayload &&
      (bytes.size() - kFrameSize) % 8 == 0) {
    // Header and MAC around a payload: parse the header as a plain frame.
    std::array<uint8_t, kFrameSize> plain{};
    std::memcpy(plain.data(), bytes.data(), kFrameHeaderSize);
    absl::StatusOr<Frame> f = DecodeFrame(plain);
    if (!f.ok()) return f;
    if (f->type != FrameType::kKick && f->type != FrameType::kEvent) {
      return Malformed("frame", absl::StrFormat("type %u carries no payload", static_cast<uint16_t>(f->type)));
    }
    f->payload.assign(reinterpret_cast<const char*>(bytes.data()) + kFrameHeaderSize,
                      bytes.size() - kFrameSize);
    return f;
  }
  if (bytes.size() < 8) return Malformed("frame", absl::StrFormat("%u bytes, want %u", bytes.size(), kFrameSize));
  const uint8_t* p = bytes.data();
  if (Get32(p) != kFrameMagic) return Malformed("frame", "bad magic");
  if (Get16(p + 4) != kProtocolVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("session frame: protocol version %u, this build speaks %u", Get16(p + 4), kProtocolVersion));
  }
  if (bytes.size() != kFrameSize) {
    return Malformed("frame", absl::StrFormat("%u bytes, want %u", bytes.size(), kFrameSize));
  }
  const uint16_t type = Get16(p + 6);
  if (type == 0 || type > kMaxFrameType) return Malformed("frame", absl::StrFormat("unknown type %u", type));
  Frame f;
  f.type = static_cast<FrameType>(type);
  f.session_id = SessionId(Get64(p + 8));
  f.counter = Get64(p + 16);
  f.arg0 = Get64(p + 24);
  f.arg1 = Get64(p + 32);
  if (f.counter == 0) return Malformed("frame", "counter 0");
  return f;
}

}  // namespace rpci::session

namespace rpci::session {

std::string EncodeMmioEntries(absl::Span<const MmioWrite> writes) {
  std::string out(writes.size() * kMmioEntrySize, '\0');
  for (size_t i = 0; i < writes.size(); ++i) {
    EncodeMmioWrite(writes[i], reinterpret_cast<uint8_t*>(out.data()) + i * kMmioEntrySize);
  }
  return out;
}

absl::StatusOr<std::vector<MmioWrite>> DecodeMmioEntries(absl::Span<const uint8_t> bytes) {
  if (bytes.size() % kMmioEntrySize != 0 || bytes.size() / kMmioEntrySize > kMaxInlineWrites) {
    return Malformed("mmio entries", absl::StrFormat("%u bytes", bytes.size()));
  }
  std::vector<MmioWrite> writes;
  for (size_t off = 0; off < bytes.size(); off += kMmioEntrySize) {
    absl::StatusOr<MmioWrite> w = DecodeMmioWrite(bytes.subspan(off, kMmioEntrySize));
    if (!w.ok()) return w.status();
    if (!writes.empty() && w->seq != writes.back().seq + 1) {
      return Malformed("mmio entries", absl::StrFormat("seq %u after %u", w->seq, writes.back().seq));
    }
    writes.push_back(*w);
  }
  return writes;
}

std::string EncodeEventPayload(const EventPayload& payload) {
  size_t size = 8 + payload.completions.size() * kCompletionEntrySize;
  for (const MirrorPatch& p : payload.patches) size += PatchWireSize(p.bytes.size());
  std::string out(size, '\0');
  uint8_t* o = reinterpret_cast<uint8_t*>(out.data());
  Put16(o, static_cast<uint16_t>(payload.completions.size()));
  Put16(o + 2, static_cast<uint16_t>(payload.patches.size()));
  size_t at = 8;
  for (const Completion& c : payload.completions) {
    EncodeCompletion(c, o + at);
    at += kCompletionEntrySize;
  }
  for (const MirrorPatch& p : payload.patches) {
    Put16(o + at, p.bar);
    Put16(o + at + 2, static_cast<uint16_t>(p.bytes.size()));
    Put32(o + at + 4, p.offset);
    std::memcpy(o + at + 8, p.bytes.data(), p.bytes.size());
    at += PatchWireSize(p.bytes.size());
  }
  return out;
}

absl::StatusOr<EventPayload> DecodeEventPayload(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < 8 || Get32(bytes.data() + 4) != 0) return Malformed("event payload", "bad header");
  const size_t completions = Get16(bytes.data()), patches = Get16(bytes.data() + 2);
  if (8 + completions * kCompletionEntrySize > bytes.size()) return Malformed("event payload", "truncated");
  EventPayload out;
  size_t at = 8;
  for (size_t i = 0; i < completions; ++i, at += kCompletionEntrySize) {
    absl::StatusOr<Completion> c = DecodeCompletion(bytes.subspan(at, kCompletionEntrySize));
    if (!c.ok()) return c.status();
    if (!out.completions.empty() && c->seq != out.completions.back().seq + 1) {
      return Malformed("event payload", absl::StrFormat("completion %u after %u", c->seq, out.completions.back().seq));
    }
    out.completions.push_back(*c);
  }
  for (size_t i = 0; i < patches; ++i) {
    if (bytes.size() - at < 8) return Malformed("event payload", "truncated patch");
    MirrorPatch p;
    p.bar = Get16(bytes.data() + at);
    const size_t len = Get16(bytes.data() + at + 2);
    p.offset = Get32(bytes.data() + at + 4);
    if (len == 0 || bytes.size() - at < PatchWireSize(len)) return Malformed("event payload", "bad patch length");
    p.bytes.assign(reinterpret_cast<const char*>(bytes.data()) + at + 8, len);
    if (!AllZero(bytes.data() + at + 8 + len, PatchWireSize(len) - 8 - len)) {
      return Malformed("event payload", "nonzero padding");
    }
    at += PatchWireSize(len);
    out.patches.push_back(std::move(p));
  }
  if (at != bytes.size()) return Malformed("event payload", "trailing bytes");
  return out;
}

}  // namespace rpci::session
