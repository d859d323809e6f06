#ifndef RPCI_CONTROLLER_LOCAL_STORE_H_
#define RPCI_CONTROLLER_LOCAL_STORE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "common/clock.h"
#include "common/files.h"
#include "controller/store.h"
#include "nlohmann/json.hpp"

namespace rpci::controller {

// The embedded store: the same rpci.io objects the cluster would hold, kept
// in a state directory as a snapshot (state.json) plus an append-only journal
// (journal.jsonl) of committed batches. Each Commit appends one line and
// fsyncs it; when the journal outgrows the snapshot, a new snapshot is written
// to a temporary file, fsynced, renamed over state.json and the directory
// fsynced, then the journal is emptied. A crash at any point leaves either the
// old or the new state; a torn last journal line (a crash mid-append) is
// ignored. The directory is locked (flock) so two controllers cannot share it.
class LocalStore : public Store {
 public:
  // Opens (creating) `dir` and replays its contents. FAILED_PRECONDITION when
  // another process holds the directory, DATA_LOSS naming the file and line
  // when a snapshot or a journal line before the last cannot be parsed.
  // The journal is compacted once it is larger than both the snapshot and
  // `min_compact_bytes`.
  static absl::StatusOr<std::unique_ptr<LocalStore>> Open(const std::string& dir, const Clock* clock,
                                                          size_t min_compact_bytes = 1 << 20);
  ~LocalStore() override;

  absl::StatusOr<StoreSnapshot> Load() override;
  CommitOutcome Commit(const StoreBatch& batch) override;

  // Journal bytes written since the last snapshot (for tests of compaction).
  size_t journal_bytes() const;

 private:
  LocalStore(std::string dir, const Clock* clock, int lock_fd, size_t min_compact_bytes);
  absl::Status Replay();
  // Appends the batch as one journal line; all or nothing.
  absl::Status Write(const StoreBatch& batch);
  // Applies a replayed journal line or snapshot to the maps, all of it or
  // (when it is not a JSON object) nothing: false then.
  bool Apply(absl::string_view text) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands the snapshot's text to `w` piece by piece.
  void WriteSnapshotText(BufferedFileWriter& w) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteSnapshot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const Clock* const clock_;
  const int lock_fd_;
  const size_t min_compact_bytes_;
  mutable std::mutex mu_;  // not absl::Mutex: see PoolManager::mu_
  int journal_fd_ ABSL_GUARDED_BY(mu_) = -1;
  size_t journal_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t snapshot_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Each object as its compact JSON text, encoded once when committed (a DOM
  // per object cost ~10 KB per device at 100k devices). B-tree maps: no
  // node allocation per object.
  absl::btree_map<std::string, std::string> devices_ ABSL_GUARDED_BY(mu_);      // by name
  absl::btree_map<std::string, std::string> attachments_ ABSL_GUARDED_BY(mu_);  // by grant id
};

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_LOCAL_STORE_H_
