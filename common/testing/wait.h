#ifndef RPCI_COMMON_TESTING_WAIT_H_
#define RPCI_COMMON_TESTING_WAIT_H_

#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rpci::testing {

// Polls `done` every `step` until it holds or `timeout` passes; its last
// answer (so a condition that becomes true at the deadline still counts).
inline bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(10),
                    absl::Duration step = absl::Milliseconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(step);
  }
  return done();
}

}  // namespace rpci::testing

#endif  // RPCI_COMMON_TESTING_WAIT_H_
