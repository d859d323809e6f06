#include "agent/inventory/sysfs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rpci::agent::sysfs {
namespace {

absl::Status ErrnoStatus(const std::string& path, int err) {
  std::string msg = absl::StrCat(path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::FailedPreconditionError(msg);
}

}  // namespace

absl::StatusOr<std::string> ReadAttr(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(path, errno);
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return ErrnoStatus(path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    // sysfs attributes are at most a page; refuse runaway files.
    if (out.size() > (1u << 20)) {
      close(fd);
      return absl::FailedPreconditionError(absl::StrCat(path, ": larger than 1 MiB"));
    }
  }
  close(fd);
  absl::StripTrailingAsciiWhitespace(&out);
  return out;
}

absl::StatusOr<uint64_t> ParseHex(absl::string_view text, uint64_t max) {
  absl::string_view digits = text;
  if (digits.size() >= 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    digits.remove_prefix(2);
  }
  if (digits.empty() || digits.size() > 16) {
    return absl::InvalidArgumentError(absl::StrCat("not a hex number: \"", text, "\""));
  }
  uint64_t value = 0;
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return absl::ascii_isxdigit(c); }) ||
      !absl::SimpleHexAtoi(digits, &value)) {
    return absl::InvalidArgumentError(absl::StrCat("not a hex number: \"", text, "\""));
  }
  if (value > max) {
    return absl::InvalidArgumentError(absl::StrCat("hex value \"", text, "\" out of range"));
  }
  return value;
}

absl::StatusOr<int64_t> ParseDecimal(absl::string_view text) {
  int64_t value;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(absl::StrCat("not an integer: \"", text, "\""));
  }
  return value;
}

Link ReadLink(const std::string& path) {
  Link link;
  char buf[PATH_MAX];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n < 0) return link;
  link.target.assign(buf, static_cast<size_t>(n));
  size_t slash = link.target.find_last_of('/');
  link.target_name = slash == std::string::npos ? link.target : link.target.substr(slash + 1);
  struct stat st;
  link.state = stat(path.c_str(), &st) == 0 ? LinkState::kResolved : LinkState::kBroken;
  return link;
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return ErrnoStatus(path, errno);
  std::vector<std::string> names;
  while (struct dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    names.push_back(std::move(name));
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return ErrnoStatus(path, errno);
  std::string out = resolved;
  free(resolved);
  return out;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

}  // namespace rpci::agent::sysfs
