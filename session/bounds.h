#ifndef RPCI_SESSION_BOUNDS_H_
#define RPCI_SESSION_BOUNDS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "session/wire.h"

namespace rpci::session {

// Checks an access of `len` bytes at `offset` (relative to the region's start)
// against the region's size and the peer's access rights. OUT_OF_RANGE for an
// access that does not fit (including zero length and overflow),
// PERMISSION_DENIED for a write to a region the peer may only read (or a read
// of a write-only one).
absl::Status CheckAccess(const RegionDesc& region, uint64_t offset, uint64_t len, bool write);

// The wire error code for a Status returned by CheckAccess or the gates.
ErrorCode ErrorCodeFor(const absl::Status& status);

// Looks up a region by kind and index; NOT_FOUND if absent.
absl::StatusOr<RegionDesc> FindRegion(const std::vector<RegionDesc>& regions, RegionKind kind,
                                      uint16_t index = 0);

}  // namespace rpci::session

#endif  // RPCI_SESSION_BOUNDS_H_
