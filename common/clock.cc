#include "common/clock.h"

#include "absl/time/clock.h"

namespace rpci {
namespace {

class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  void SleepFor(absl::Duration d) const override { absl::SleepFor(d); }
};

}  // namespace

Clock* Clock::Real() {
  static Clock* clock = new RealClock();
  return clock;
}

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
