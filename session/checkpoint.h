#ifndef RPCI_SESSION_CHECKPOINT_H_
#define RPCI_SESSION_CHECKPOINT_H_

// The agent's small on-disk record of its live sessions, so a restarted agent
// takes its sessions back instead of dropping them. Written whole with
// write-to-temp + fsync + rename + fsync(dir): a crash leaves the old or the
// new file, never a torn one.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "session/session_id.h"
#include "session/session_key.h"

namespace rpci::session {

struct SessionRecord {
  SessionId session_id;
  SessionKey key;
  std::string grant_id;
  std::string device_id;
  std::string compute_node;
  uint64_t applied_seq = 0;     // highest MMIO write applied when written
  uint64_t completion_seq = 0;  // completions produced when written
  int64_t opened_unix_seconds = 0;
  int64_t last_seen_unix_seconds = 0;
  // A client has attached the session at least once (format 2). A format-1
  // record does not say; it reads as true (a client may have come), so an
  // old record is never taken for a reservation nobody attached.
  bool ever_attached = true;
};

// 2: adds ever_attached. 1 (read, never written): the same without it.
inline constexpr int kCheckpointFormat = 2;

// Serializes the records as JSON (format version kCheckpointFormat).
std::string EncodeCheckpoint(absl::Span<const SessionRecord> records);
// Parses a checkpoint of format 1 or kCheckpointFormat; any deviation (not
// JSON, other format version, missing or mistyped field, bad key, duplicate
// session) is DATA_LOSS naming it.
absl::StatusOr<std::vector<SessionRecord>> DecodeCheckpoint(std::string_view text);

// Crash-safe replacement of `path` with the encoded records.
absl::Status WriteCheckpoint(const std::string& path, absl::Span<const SessionRecord> records);
// Reads `path`; a missing file is an empty list (first start).
absl::StatusOr<std::vector<SessionRecord>> ReadCheckpoint(const std::string& path);

}  // namespace rpci::session

#endif  // RPCI_SESSION_CHECKPOINT_H_
