#include "session/sequencing.h"

#include "absl/strings/str_format.h"

namespace rpci::session {

MmioWrite WriteLog::Append(MmioWrite w) {
  w.seq = next_++;
  pending_.push_back(w);
  return w;
}

absl::Status WriteLog::Ack(uint64_t applied) {
  if (applied > last()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("mmio ack %u is past the last write sent (%u)", applied, last()));
  }
  if (applied <= acked_) return absl::OkStatus();
  while (!pending_.empty() && pending_.front().seq <= applied) pending_.pop_front();
  acked_ = applied;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<MmioWrite>> WriteLog::Resume(uint64_t applied) {
  if (applied < acked_) {
    return absl::DataLossError(absl::StrFormat(
        "device side reports %u writes applied but %u were acknowledged", applied, acked_));
  }
  if (absl::Status s = Ack(applied); !s.ok()) return s;
  return From(applied + 1);
}

std::vector<MmioWrite> WriteLog::From(uint64_t from) const {
  std::vector<MmioWrite> out;
  for (const MmioWrite& w : pending_) {
    if (w.seq >= from) out.push_back(w);
  }
  return out;
}

absl::StatusOr<ApplyGate::Verdict> ApplyGate::Check(uint64_t seq) const {
  if (seq == 0) return absl::InvalidArgumentError("mmio write sequence 0");
  if (seq <= applied_) return Verdict::kDuplicate;
  if (seq == applied_ + 1) return Verdict::kApply;
  return absl::OutOfRangeError(
      absl::StrFormat("mmio write %u arrived before %u (applied so far: %u)", seq, applied_ + 1, applied_));
}

}  // namespace rpci::session
