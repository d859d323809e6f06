#include "common/testing/temp_dir.h"

#include <stdlib.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace rpci::testing {

std::string MakeTempDir(std::string_view prefix, TempDirUse use) {
  const char* env = std::getenv("TEST_TMPDIR");
  std::string base = env != nullptr && *env != '\0' ? env : "/tmp";
  std::string suffix = "/" + std::string(prefix) + "-XXXXXX";
  if (use == TempDirUse::kSockets &&
      base.size() + suffix.size() + kSocketNameRoom >= sizeof(sockaddr_un{}.sun_path)) {
    base = "/tmp";
  }
  std::string path = base + suffix;
  if (mkdtemp(path.data()) == nullptr) {
    std::fprintf(stderr, "MakeTempDir: mkdtemp %s: %s\n", path.c_str(), std::strerror(errno));
    std::abort();
  }
  return path;
}

}  // namespace rpci::testing
