#include "session/bounds.h"

#include "absl/strings/str_format.h"

namespace rpci::session {

absl::Status CheckAccess(const RegionDesc& region, uint64_t offset, uint64_t len, bool write) {
  if (len == 0 || offset >= region.size || len > region.size - offset) {
    return absl::OutOfRangeError(absl::StrFormat("%s %u: access [0x%x, +%u) outside its %u bytes",
                                                 RegionKindName(region.kind), region.index, offset, len,
                                                 region.size));
  }
  const uint8_t need = write ? kAccessWrite : kAccessRead;
  if ((region.access & need) == 0) {
    return absl::PermissionDeniedError(absl::StrFormat("%s %u: %s not allowed", RegionKindName(region.kind),
                                                       region.index, write ? "write" : "read"));
  }
  return absl::OkStatus();
}

ErrorCode ErrorCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOutOfRange: return ErrorCode::kOutOfBounds;
    case absl::StatusCode::kPermissionDenied: return ErrorCode::kReadOnly;
    case absl::StatusCode::kUnauthenticated: return ErrorCode::kBadKey;
    case absl::StatusCode::kNotFound: return ErrorCode::kStaleSession;
    case absl::StatusCode::kFailedPrecondition: return ErrorCode::kBadSequence;
    default: return ErrorCode::kMalformed;
  }
}

absl::StatusOr<RegionDesc> FindRegion(const std::vector<RegionDesc>& regions, RegionKind kind, uint16_t index) {
  for (const RegionDesc& r : regions) {
    if (r.kind == kind && r.index == index) return r;
  }
  return absl::NotFoundError(absl::StrFormat("no %s %u region in the session", RegionKindName(kind), index));
}

}  // namespace rpci::session
