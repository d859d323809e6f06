#include "agent/session/testing/logged_device.h"

#include <unistd.h>

namespace rpci::agent::testing {

absl::Status LoggedDevice::WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  if (absl::Status s = inner_->WriteRegister(bar, offset, width, value); !s.ok()) return s;
  const uint64_t record[2] = {offset, value};
  if (fd_ >= 0 && ::write(fd_, record, sizeof(record)) != sizeof(record)) {
    return absl::DataLossError("device log write failed");
  }
  return absl::OkStatus();
}

}  // namespace rpci::agent::testing
