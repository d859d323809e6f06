#include "agent/backends/device_backend.h"

#include "absl/strings/str_format.h"

namespace rpci::agent {

absl::StatusOr<BarWindow> CheckBarAccess(const std::vector<BarWindow>& bars, uint16_t bar, uint64_t offset,
                                         uint8_t width) {
  for (const BarWindow& w : bars) {
    if (w.index != bar) continue;
    if (width == 0 || offset % width != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("BAR%d: %d-byte access at 0x%x is not aligned", bar, width, offset));
    }
    if (offset > w.size || width > w.size - offset) {
      return absl::OutOfRangeError(
          absl::StrFormat("BAR%d: %d-byte access at 0x%x beyond its 0x%x bytes", bar, width, offset, w.size));
    }
    return w;
  }
  return absl::NotFoundError(absl::StrFormat("no BAR%d on this device", bar));
}

}  // namespace rpci::agent
