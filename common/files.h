#ifndef RPCI_COMMON_FILES_H_
#define RPCI_COMMON_FILES_H_

// Small files a component hands to another (certificates, keys, CDI specs,
// checkpoints of the plugin, ready files of test helpers).

#include <string>

#include "absl/status/status.h"

namespace rpci {

// Replaces `path` whole: written to `path`.tmp with `mode` (created with it,
// never wider), owned by group `gid` when >= 0, fsynced, then renamed over
// `path`, so a reader sees the old file or the new one, never half. On an
// error the temp file is removed; NOT_FOUND when the directory is missing,
// INTERNAL otherwise, the message naming the step and the file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents, int mode, int gid = -1);

}  // namespace rpci

#endif  // RPCI_COMMON_FILES_H_
