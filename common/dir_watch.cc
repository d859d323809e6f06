#include "common/dir_watch.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace rpci {

absl::StatusOr<std::unique_ptr<DirWatch>> DirWatch::Open(const std::string& dir, bool removals) {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  const uint32_t mask = IN_CREATE | IN_MOVED_TO | (removals ? IN_DELETE : 0);
  if (fd < 0 || inotify_add_watch(fd, dir.c_str(), mask) < 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    return absl::InternalError(absl::StrCat("inotify on ", dir, ": ", std::strerror(err)));
  }
  return std::unique_ptr<DirWatch>(new DirWatch(fd));
}

DirWatch::~DirWatch() { close(fd_); }

std::vector<DirEvent> DirWatch::Wait(absl::Duration timeout) {
  std::vector<DirEvent> events;
  pollfd pfd{fd_, POLLIN, 0};
  if (poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <= 0) return events;
  alignas(inotify_event) char buf[4096];
  ssize_t len;
  while ((len = read(fd_, buf, sizeof(buf))) > 0) {
    for (char* p = buf; p < buf + len;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (ev->len > 0) events.push_back({ev->name, (ev->mask & IN_DELETE) != 0});
    }
  }
  return events;
}

}  // namespace rpci
