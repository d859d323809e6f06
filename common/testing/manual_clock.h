#ifndef RPCI_COMMON_TESTING_MANUAL_CLOCK_H_
#define RPCI_COMMON_TESTING_MANUAL_CLOCK_H_

#include <mutex>

#include "absl/time/time.h"
#include "common/clock.h"

namespace rpci {

// A clock that only moves when told to. SleepFor advances it.
class ManualClock : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::FromUnixSeconds(1700000000));
  absl::Time Now() const override;
  void SleepFor(absl::Duration d) const override;
  void Advance(absl::Duration d);

 private:
  mutable std::mutex mu_;
  mutable absl::Time now_;
};

}  // namespace rpci

#endif  // RPCI_COMMON_TESTING_MANUAL_CLOCK_H_
