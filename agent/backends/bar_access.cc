#include "agent/backends/bar_access.h"

#include "absl/strings/str_format.h"

namespace rpci::agent {
namespace {

absl::StatusOr<SessionDevice::Bar> Find(const std::vector<SessionDevice::Bar>& bars, uint16_t bar) {
  for (const SessionDevice::Bar& b : bars) {
    if (b.index == bar) return b;
  }
  return absl::NotFoundError(absl::StrFormat("no BAR%d on this device", bar));
}

absl::Status InRange(const SessionDevice::Bar& b, uint64_t offset, uint64_t len) {
  if (offset > b.size || len > b.size - offset) {
    return absl::OutOfRangeError(
        absl::StrFormat("BAR%d: %d-byte access at 0x%x beyond its 0x%x bytes", b.index, len, offset, b.size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SessionDevice::Bar> CheckRegisterWrite(const std::vector<SessionDevice::Bar>& bars, uint16_t bar,
                                                      uint64_t offset, uint8_t width, uint64_t value) {
  absl::StatusOr<SessionDevice::Bar> b = Find(bars, bar);
  if (!b.ok()) return b.status();
  if (width != 4 && width != 8) {
    return absl::InvalidArgumentError(absl::StrFormat("BAR%d: register width %d (want 4 or 8)", bar, width));
  }
  if (offset % width != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BAR%d: %d-byte access at 0x%x is not aligned", bar, width, offset));
  }
  if (width == 4 && (value >> 32) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("BAR%d: value 0x%x does not fit 4 bytes", bar, value));
  }
  if (absl::Status s = InRange(*b, offset, width); !s.ok()) return s;
  return b;
}

absl::StatusOr<SessionDevice::Bar> CheckBarRead(const std::vector<SessionDevice::Bar>& bars, uint16_t bar,
                                                uint64_t offset, uint64_t len) {
  absl::StatusOr<SessionDevice::Bar> b = Find(bars, bar);
  if (!b.ok()) return b.status();
  if (offset % 4 != 0 || len % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BAR%d: read of %d bytes at 0x%x is not in whole registers", bar, len, offset));
  }
  if (absl::Status s = InRange(*b, offset, len); !s.ok()) return s;
  return b;
}

}  // namespace rpci::agent
