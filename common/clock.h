#ifndef RPCI_COMMON_CLOCK_H_
#define RPCI_COMMON_CLOCK_H_

#include "absl/time/time.h"

namespace rpci {

// Source of time for everything that decides on leases, grace periods and
// backoff, so tests can move time by hand.
class Clock {
 public:
  virtual ~Clock() = default;

  // Current wall time. Thread-safe.
  virtual absl::Time Now() const = 0;

  // Sleeps for `d` of this clock's time. Thread-safe.
  virtual void SleepFor(absl::Duration d) const = 0;

  // The process-wide real clock; never null, never deleted.
  static Clock* Real();
};

}  // namespace rpci

#endif  // RPCI_COMMON_CLOCK_H_
