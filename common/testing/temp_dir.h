#ifndef RPCI_COMMON_TESTING_TEMP_DIR_H_
#define RPCI_COMMON_TESTING_TEMP_DIR_H_

#include <string>
#include <string_view>

namespace rpci::testing {

// What a test will put in its temp dir.
enum class TempDirUse {
  kFiles,
  // Unix sockets: their paths must fit sockaddr_un.sun_path (108 bytes).
  kSockets,
};

// A fresh, empty directory "<base>/<prefix>-XXXXXX" for one test. The base is
// $TEST_TMPDIR (Bazel's per-test scratch space) or /tmp when it is unset. For
// kSockets the base is /tmp whenever $TEST_TMPDIR is too long to leave
// kSocketNameRoom bytes for a socket's name under the new directory.
// Aborts the test binary with a message when the directory cannot be made.
std::string MakeTempDir(std::string_view prefix, TempDirUse use = TempDirUse::kFiles);

// Bytes of sun_path that a kSockets directory leaves for "/<socket name>".
inline constexpr size_t kSocketNameRoom = 40;

}  // namespace rpci::testing

#endif  // RPCI_COMMON_TESTING_TEMP_DIR_H_
