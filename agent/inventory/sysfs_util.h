#ifndef RPCI_AGENT_INVENTORY_SYSFS_UTIL_H_
#define RPCI_AGENT_INVENTORY_SYSFS_UTIL_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

// Small readers for sysfs attribute files and links. Every failure is a
// Status naming the path and the cause, for the caller to record.
namespace rpci::agent::sysfs {

// The file's contents with trailing whitespace removed. NOT_FOUND when
// absent; other errors carry strerror text ("Is a directory" ...).
absl::StatusOr<std::string> ReadAttr(const std::string& path);

// A "0x..." (or bare hex) value no larger than `max`.
absl::StatusOr<uint64_t> ParseHex(absl::string_view text, uint64_t max);
// A decimal integer, possibly negative.
absl::StatusOr<int64_t> ParseDecimal(absl::string_view text);

enum class LinkState { kAbsent, kResolved, kBroken };

// Reads a symlink: its state, and the last path component of its target
// (kept even when the target is gone, e.g. a driver name or a BDF).
struct Link {
  LinkState state = LinkState::kAbsent;
  std::string target_name;
  std::string target;  // as readlink(2) gave it
};
Link ReadLink(const std::string& path);

// Entry names of a directory, sorted; NOT_FOUND when absent.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path);

// realpath(3) of `path`.
absl::StatusOr<std::string> RealPath(const std::string& path);

bool Exists(const std::string& path);

}  // namespace rpci::agent::sysfs

#endif  // RPCI_AGENT_INVENTORY_SYSFS_UTIL_H_
