#include "agent/session/throttle.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace rpci::agent {

ByteBudget::ByteBudget(uint64_t bytes_per_second, uint64_t burst_bytes, absl::Time now)
    : rate_(static_cast<double>(bytes_per_second)),
      burst_(static_cast<double>(burst_bytes)),
      tokens_(static_cast<double>(burst_bytes)),
      last_(now) {}

bool ByteBudget::Spend(uint64_t bytes, absl::Time now) {
  if (now > last_) {
    tokens_ = std::min(burst_, tokens_ + rate_ * absl::ToDoubleSeconds(now - last_));
    last_ = now;
  }
  if (throttled_ && tokens_ >= burst_) throttled_ = false;
  tokens_ -= static_cast<double>(bytes);
  if (tokens_ < 0) throttled_ = true;
  return throttled_;
}

void RecentDemand::Note(uint64_t session, absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (last_[0].first != session) last_[1] = last_[0];
  last_[0] = {session, now};
}

bool RecentDemand::OtherThan(uint64_t session, absl::Time now, absl::Duration window) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, at] : last_) {
    if (id != 0 && id != session) return now - at < window;
  }
  return false;
}

namespace {
pid_t ThisThread() { return static_cast<pid_t>(syscall(SYS_gettid)); }
}  // namespace

absl::StatusOr<int> ThreadNice() {
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(ThisThread()));
  if (nice == -1 && errno != 0) return absl::InternalError(absl::StrCat("getpriority: ", std::strerror(errno)));
  return nice;
}

absl::Status SetThreadNice(int nice) {
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(ThisThread()), nice) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("setpriority(", nice, "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace rpci::agent
