#ifndef RPCI_COMMON_DIR_WATCH_H_
#define RPCI_COMMON_DIR_WATCH_H_

// Names created in and removed from one directory, from inotify: how the
// kubelet's plugin watcher finds plugin sockets and how a plugin notices the
// kubelet recreating kubelet.sock.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rpci {

struct DirEvent {
  std::string name;      // inside the directory
  bool removed = false;  // otherwise created (or moved in)
};

class DirWatch {
 public:
  // Watches `dir` for names created or moved in, and with `removals` also
  // for names deleted. INTERNAL with errno's text when inotify refuses.
  static absl::StatusOr<std::unique_ptr<DirWatch>> Open(const std::string& dir, bool removals = false);
  ~DirWatch();
  DirWatch(const DirWatch&) = delete;
  DirWatch& operator=(const DirWatch&) = delete;

  // Waits up to `timeout` for events; every event pending then, oldest
  // first (empty after a quiet `timeout`).
  std::vector<DirEvent> Wait(absl::Duration timeout);

 private:
  explicit DirWatch(int fd) : fd_(fd) {}
  const int fd_;
};

}  // namespace rpci

#endif  // RPCI_COMMON_DIR_WATCH_H_
