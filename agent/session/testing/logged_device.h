#ifndef RPCI_AGENT_SESSION_TESTING_LOGGED_DEVICE_H_
#define RPCI_AGENT_SESSION_TESTING_LOGGED_DEVICE_H_

#include <vector>

#include "agent/session/session_device.h"

namespace rpci::agent::testing {

// Wraps a device and appends each applied register write (16 bytes: offset,
// value) to `fd` before returning, standing in for a device that outlives
// the agent process: the record survives the agent's SIGKILL. fd < 0 logs
// nothing. Not owning either.
class LoggedDevice : public SessionDevice {
 public:
  LoggedDevice(SessionDevice* inner, int fd) : inner_(inner), fd_(fd) {}
  std::string kind() const override { return inner_->kind(); }
  std::vector<Bar> Bars() const override { return inner_->Bars(); }
  absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) override;
  absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) override {
    return inner_->ReadBar(bar, offset, len, out);
  }
  uint8_t* dma_space() override { return inner_->dma_space(); }
  uint64_t dma_size() const override { return inner_->dma_size(); }
  std::vector<Interrupt> TakeInterrupts() override { return inner_->TakeInterrupts(); }
  absl::Status Reset() override { return inner_->Reset(); }
  bool keeps_state_across_agent_restart() const override { return true; }

 private:
  SessionDevice* inner_;
  int fd_;
};

}  // namespace rpci::agent::testing

#endif  // RPCI_AGENT_SESSION_TESTING_LOGGED_DEVICE_H_
