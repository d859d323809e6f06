#ifndef RPCI_AGENT_BACKENDS_BAR_ACCESS_H_
#define RPCI_AGENT_BACKENDS_BAR_ACCESS_H_

// The checks every backend makes before touching a BAR, so SessionDevice's
// error contract (NOT_FOUND / INVALID_ARGUMENT / OUT_OF_RANGE) is written once.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/session/session_device.h"

namespace rpci::agent {

// A register write of `width` (4 or 8) bytes of `value` at `offset` of BAR
// `bar`; returns the BAR on success.
absl::StatusOr<SessionDevice::Bar> CheckRegisterWrite(const std::vector<SessionDevice::Bar>& bars, uint16_t bar,
                                                      uint64_t offset, uint8_t width, uint64_t value);

// A read of `len` bytes at `offset` in whole 32-bit registers.
absl::StatusOr<SessionDevice::Bar> CheckBarRead(const std::vector<SessionDevice::Bar>& bars, uint16_t bar,
                                                uint64_t offset, uint64_t len);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_BACKENDS_BAR_ACCESS_H_
