#ifndef RPCI_COMMON_FILES_H_
#define RPCI_COMMON_FILES_H_

// Small files a component hands to another (certificates, keys, CDI specs,
// checkpoints of the plugin and the agent, ready files of test helpers), and
// the controller's local store (journal and snapshot).

#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rpci {

// Writes to an open descriptor through a 1 MiB buffer, so that a large text
// (a snapshot of 100k objects) is never built as one string next to the
// objects it is made from. The first failure sticks: later Adds are dropped
// and Flush returns it (INTERNAL, naming `path`).
class BufferedFileWriter {
 public:
  BufferedFileWriter(int fd, std::string path);
  void Add(absl::string_view text);
  // Writes what is buffered.
  absl::Status Flush();
  // Bytes added so far.
  size_t written() const { return written_; }

 private:
  const int fd_;
  const std::string path_;
  std::string buf_;
  size_t written_ = 0;
  absl::Status status_;
};

// Replaces `path` whole: written to `path`.tmp with `mode` (created with it,
// never wider), owned by group `gid` when >= 0, fsynced, renamed over
// `path`, then the directory is fsynced, so a reader sees the old file or the
// new one, never half, and after a crash the new name points at the new
// contents. On an error the temp file is removed; NOT_FOUND when the
// directory is missing, INTERNAL otherwise, the message naming the step and
// the file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents, int mode, int gid = -1);

// The same for contents too large to hold as one string: `produce` hands
// them to the writer piece by piece. Returns the bytes written.
absl::StatusOr<size_t> WriteFileAtomically(const std::string& path,
                                           const std::function<void(BufferedFileWriter&)>& produce, int mode,
                                           int gid = -1);

}  // namespace rpci

#endif  // RPCI_COMMON_FILES_H_
