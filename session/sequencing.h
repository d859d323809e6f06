#ifndef RPCI_SESSION_SEQUENCING_H_
#define RPCI_SESSION_SEQUENCING_H_

// The ordering and replay state machine of the MMIO write stream. The client
// numbers writes 1, 2, 3 ... and keeps each until the device side acknowledges
// it; the agent applies exactly the next number and nothing else. Together
// they give: program order, replay after reconnect of exactly the
// unacknowledged writes, and no write applied twice. Neither class is
// thread-safe; the owner serializes calls.

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "session/wire.h"

namespace rpci::session {

// Compute side: the log of posted writes not yet acknowledged.
class WriteLog {
 public:
  // `acked` is the highest sequence already acknowledged (0 for a new session).
  explicit WriteLog(uint64_t acked = 0) : acked_(acked), next_(acked + 1) {}

  // Assigns the next sequence number to `w` and keeps it until acknowledged.
  MmioWrite Append(MmioWrite w);

  // The device side has applied everything up to `applied`. An ack below the
  // current one is stale and ignored; an ack of a write never sent is
  // a protocol violation: FAILED_PRECONDITION.
  absl::Status Ack(uint64_t applied);

  // After reconnecting, the agent reports `applied`. Returns the writes to
  // replay (those after it, in order). If the agent reports less than was
  // already acknowledged, acknowledged writes were lost: DATA_LOSS.
  absl::StatusOr<std::vector<MmioWrite>> Resume(uint64_t applied);

  // Unacknowledged writes with seq >= from, in order.
  std::vector<MmioWrite> From(uint64_t from) const;

  uint64_t acked() const { return acked_; }
  uint64_t last() const { return next_ - 1; }
  size_t outstanding() const { return pending_.size(); }

 private:
  uint64_t acked_;
  uint64_t next_;
  std::deque<MmioWrite> pending_;
};

// Device side: decides whether an incoming write is the next one to apply.
class ApplyGate {
 public:
  explicit ApplyGate(uint64_t applied = 0) : applied_(applied) {}

  enum class Verdict { kApply, kDuplicate };
  // kApply for exactly applied()+1; kDuplicate for anything already applied
  // (a replay: skip it, never apply twice); OUT_OF_RANGE for a gap (a write
  // would be applied before one that precedes it).
  absl::StatusOr<Verdict> Check(uint64_t seq) const;
  // REQUIRES: Check(seq) returned kApply and the write was applied.
  void MarkApplied(uint64_t seq) { applied_ = seq; }

  uint64_t applied() const { return applied_; }

 private:
  uint64_t applied_;
};

}  // namespace rpci::session

#endif  // RPCI_SESSION_SEQUENCING_H_
