// The session wire format is what the peer writes into our memory or sends:
// anchor record, MMIO ring entries, completion entries, ring headers and
// frames. Every decoder gets the same bytes; whatever decodes must re-encode
// to something that decodes to the same value.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "session/wire.h"

namespace {

using namespace rpci::session;

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::Span<const uint8_t> bytes(data, size);

  if (absl::StatusOr<Anchor> a = DecodeAnchor(bytes); a.ok()) {
    for (const RegionDesc& r : a->regions) Check(ValidateRegion(r).ok());
    absl::StatusOr<Anchor> again = DecodeAnchor(EncodeAnchor(*a));
    Check(again.ok() && again->session_id == a->session_id && again->version == a->version &&
          again->regions == a->regions);
  }

  if (absl::StatusOr<MmioWrite> w = DecodeMmioWrite(bytes); w.ok()) {
    uint8_t out[kMmioEntrySize];
    EncodeMmioWrite(*w, out);
    absl::StatusOr<MmioWrite> again = DecodeMmioWrite(absl::MakeConstSpan(out, kMmioEntrySize));
    Check(again.ok() && *again == *w);
  }

  if (absl::StatusOr<Completion> c = DecodeCompletion(bytes); c.ok()) {
    uint8_t out[kCompletionEntrySize];
    EncodeCompletion(*c, out);
    absl::StatusOr<Completion> again = DecodeCompletion(absl::MakeConstSpan(out, kCompletionEntrySize));
    Check(again.ok() && *again == *c);
  }

  for (uint32_t entry_size : {static_cast<uint32_t>(kMmioEntrySize), static_cast<uint32_t>(kCompletionEntrySize)}) {
    if (absl::StatusOr<RingHeader> h = DecodeRingHeader(bytes, entry_size); h.ok()) {
      Check(h->capacity != 0 && h->capacity <= kMaxRingCapacity && h->head <= h->tail &&
            h->tail - h->head <= h->capacity);
      // The slot of any entry in flight lies inside the ring region.
      if (h->tail > 0) {
        Check(RingSlotOffset(h->tail, h->capacity, entry_size) + entry_size <=
              RingRegionSize(h->capacity, entry_size));
      }
      uint8_t out[kRingHeaderSize];
      EncodeRingHeader(*h, out);
      absl::StatusOr<RingHeader> again = DecodeRingHeader(absl::MakeConstSpan(out, kRingHeaderSize), entry_size);
      Check(again.ok() && again->capacity == h->capacity && again->entry_size == h->entry_size &&
            again->head == h->head && again->tail == h->tail);
    }
  }

  if (absl::StatusOr<Frame> f = DecodeFrame(bytes); f.ok()) {
    (void)ErrorCodeName(static_cast<ErrorCode>(f->arg0));
    std::array<uint8_t, kFrameSize> out = EncodeFrame(*f);
    absl::StatusOr<Frame> again = DecodeFrame(out);
    Check(again.ok() && again->type == f->type && again->session_id == f->session_id &&
          again->counter == f->counter && again->arg0 == f->arg0 && again->arg1 == f->arg1 && f->counter != 0);
  }
  return 0;
}
