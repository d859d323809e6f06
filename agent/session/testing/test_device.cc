#include "agent/session/testing/test_device.h"

#include <algorithm>
#include <cstring>

namespace rpci::agent::testing {

TestDevice::TestDevice(size_t dma_size) : bar0_(4096, 0), bar2_(256, 0xee), dma_(dma_size, 0) {}

std::vector<SessionDevice::Bar> TestDevice::Bars() const { return {{0, 4096, true}, {2, 256, false}}; }

uint64_t TestDevice::reg(uint64_t offset) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t v = 0;
  std::memcpy(&v, &bar0_[offset], 8);
  return v;
}

absl::Status TestDevice::WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  std::lock_guard<std::mutex> lock(mu_);
  if (bar != 0) return absl::PermissionDeniedError("test device: only BAR0 is writable");
  std::memcpy(&bar0_[offset], &value, width);
  applied_.emplace_back(offset, value);
  if (offset == kDoorbell) {
    uint64_t src = 0, dst = 0, len = 0;
    std::memcpy(&src, &bar0_[kSrc], 8);
    std::memcpy(&dst, &bar0_[kDst], 8);
    std::memcpy(&len, &bar0_[kLen], 8);
    if (src <= dma_.size() && dst <= dma_.size() && len <= dma_.size() - src && len <= dma_.size() - dst) {
      std::memmove(&dma_[dst], &dma_[src], len);
    }
    std::memcpy(&bar0_[kStatus], &value, 8);
    pending_.push_back({1, 1, value});
  }
  return absl::OkStatus();
}

absl::Status TestDevice::ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::vector<uint8_t>& b = bar == 0 ? bar0_ : bar2_;
  if (offset > b.size() || len > b.size() - offset) return absl::OutOfRangeError("test device: read outside BAR");
  std::memcpy(out, &b[offset], len);
  return absl::OkStatus();
}

std::vector<SessionDevice::Interrupt> TestDevice::TakeInterrupts() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(pending_, {});
}

absl::Status TestDevice::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  std::fill(bar0_.begin(), bar0_.end(), 0);
  std::fill(dma_.begin(), dma_.end(), 0);
  pending_.clear();
  ++resets_;
  return absl::OkStatus();
}

int TestDevice::resets() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resets_;
}

std::vector<std::pair<uint64_t, uint64_t>> TestDevice::applied() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_;
}

}  // namespace rpci::agent::testing
