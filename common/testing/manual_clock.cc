#include "common/testing/manual_clock.h"

namespace rpci {

ManualClock::ManualClock(absl::Time start) : now_(start) {}

absl::Time ManualClock::Now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return now_;
}

void ManualClock::SleepFor(absl::Duration d) const {
  std::lock_guard<std::mutex> lock(mu_);
  now_ += d;
}

void ManualClock::Advance(absl::Duration d) { SleepFor(d); }

}  // namespace rpci
