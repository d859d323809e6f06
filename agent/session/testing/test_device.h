#ifndef RPCI_AGENT_SESSION_TESTING_TEST_DEVICE_H_
#define RPCI_AGENT_SESSION_TESTING_TEST_DEVICE_H_

#include <mutex>
#include <utility>
#include <vector>

#include "agent/session/session_device.h"

namespace rpci::agent::testing {

// A register-file device for session tests. BAR0 (4 KiB, writable) holds
// registers; writing kDoorbell copies DMA [kSrc] -> [kDst] of [kLen] bytes,
// sets kStatus to the doorbell value and raises vector 1 with that value.
// BAR2 (256 bytes) is read-only to sessions. Every applied write is logged.
class TestDevice : public SessionDevice {
 public:
  static constexpr uint64_t kSrc = 0x100, kDst = 0x108, kLen = 0x110, kDoorbell = 0x118, kStatus = 0x120;

  explicit TestDevice(size_t dma_size = 1 << 20);
  std::string kind() const override { return "test"; }
  std::vector<Bar> Bars() const override;
  absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) override;
  absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) override;
  uint8_t* dma_space() override { return dma_.data(); }
  uint64_t dma_size() const override { return dma_.size(); }
  std::vector<Interrupt> TakeInterrupts() override;
  // Zeroes BAR0 and the DMA space, drops pending interrupts; counts resets.
  absl::Status Reset() override;
  // It lives in the test, not in the agent: it stands for a device that
  // outlives an agent restart.
  bool keeps_state_across_agent_restart() const override { return true; }
  int resets() const;

  // (offset, value) of every write applied, in order.
  std::vector<std::pair<uint64_t, uint64_t>> applied() const;
  uint64_t reg(uint64_t offset) const;

 private:
  mutable std::mutex mu_;
  std::vector<uint8_t> bar0_, bar2_, dma_;
  std::vector<std::pair<uint64_t, uint64_t>> applied_;
  std::vector<Interrupt> pending_;
  int resets_ = 0;
};

}  // namespace rpci::agent::testing

#endif  // RPCI_AGENT_SESSION_TESTING_TEST_DEVICE_H_
