#ifndef RPCI_AGENT_SESSION_THROTTLE_H_
#define RPCI_AGENT_SESSION_THROTTLE_H_

// Fairness between sessions on one agent (issue 12): a session that moves
// more bytes than its budget is throttled while another session asks the
// agent for work, i.e. its worker thread runs at a lower CPU priority (and
// its endpoint moves bulk in small pieces) until it has been under budget
// for a while or the other session has gone quiet, so another session's
// doorbell gets a CPU first while the flooding session's pushes use what is
// left. A session alone on the agent is never throttled: there is nobody to
// yield to (at nice 19 its pushes waited behind every other process on the
// host; docs/benchmarks.md, "Device round trip: a lone session is not
// throttled").

#include <cstdint>
#include <mutex>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rpci::agent {

struct ThrottleOptions {
  // A session may push this many bytes a second at normal priority, with
  // bursts of up to `burst_bytes`.
  uint64_t bytes_per_second = uint64_t{256} << 20;
  uint64_t burst_bytes = uint64_t{16} << 20;
  // How much nicer (1..19, setpriority) a throttled session's worker runs;
  // 0 turns throttling off.
  int nice = 19;
  // Another session counts as asking for work for this long after its last
  // doorbell or refresh (RecentDemand).
  absl::Duration contention_window = absl::Seconds(1);
};

// Which sessions asked the agent for work lately (doorbells, refreshes).
// Thread-safe; its lock is taken with no other held.
class RecentDemand {
 public:
  void Note(uint64_t session, absl::Time now);
  // Whether a session other than `session` was noted in (now - window, now].
  bool OtherThan(uint64_t session, absl::Time now, absl::Duration window) const;

 private:
  mutable std::mutex mu_;
  // The last two distinct sessions noted, newest first (0: none): the
  // newest other than any one session is among them. Under mu_.
  std::pair<uint64_t, absl::Time> last_[2] = {{0, absl::InfinitePast()}, {0, absl::InfinitePast()}};
};

// A token bucket of bytes. Not thread-safe (one per session, used under its
// lock).
class ByteBudget {
 public:
  ByteBudget(uint64_t bytes_per_second, uint64_t burst_bytes, absl::Time now);
  // Spends `bytes` at `now`. A budget that goes below zero is throttled, and
  // stays throttled until it has filled up again (burst_bytes unspent), so a
  // steady flood does not flip in and out at every push. Returns throttled().
  bool Spend(uint64_t bytes, absl::Time now);
  bool throttled() const { return throttled_; }

 private:
  const double rate_;  // bytes per second
  const double burst_;
  double tokens_;
  absl::Time last_;
  bool throttled_ = false;
};

// The calling thread's nice value (Linux: per thread).
absl::StatusOr<int> ThreadNice();
// Sets it; raising it back (a lower value) needs CAP_SYS_NICE or RLIMIT_NICE.
absl::Status SetThreadNice(int nice);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_SESSION_THROTTLE_H_
