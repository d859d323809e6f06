#include "common/testing/temp_dir.h"

#include <sys/un.h>

#include <cstdlib>
#include <filesystem>

#include "gtest/gtest.h"

namespace rpci::testing {
namespace {

namespace fs = std::filesystem;

// Sets TEST_TMPDIR for one test and puts the old value back.
class ScopedTestTmpdir {
 public:
  explicit ScopedTestTmpdir(const std::string& value) {
    const char* old = std::getenv("TEST_TMPDIR");
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv("TEST_TMPDIR", value.c_str(), 1);
  }
  ~ScopedTestTmpdir() {
    if (had_) {
      setenv("TEST_TMPDIR", old_.c_str(), 1);
    } else {
      unsetenv("TEST_TMPDIR");
    }
  }

 private:
  bool had_ = false;
  std::string old_;
};

TEST(MakeTempDirTest, MakesAFreshEmptyDirectoryUnderTestTmpdir) {
  const std::string base = std::getenv("TEST_TMPDIR");
  std::string a = MakeTempDir("case");
  std::string b = MakeTempDir("case");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind(base + "/case-", 0), 0u) << a;
  EXPECT_TRUE(fs::is_directory(a));
  EXPECT_TRUE(fs::is_empty(a));
}

TEST(MakeTempDirTest, UsesTmpWhenTestTmpdirIsUnset) {
  ScopedTestTmpdir restore("x");
  unsetenv("TEST_TMPDIR");
  std::string dir = MakeTempDir("rpci-unset");
  EXPECT_EQ(dir.rfind("/tmp/rpci-unset-", 0), 0u) << dir;
  fs::remove(dir);
}

TEST(MakeTempDirTest, SocketDirsStayUnderTestTmpdirWhenItIsShort) {
  std::string shortbase = MakeTempDir("s", TempDirUse::kFiles);
  if (shortbase.size() > 40) shortbase = "/tmp";  // Bazel's own TEST_TMPDIR is long.
  ScopedTestTmpdir env(shortbase);
  std::string dir = MakeTempDir("sock", TempDirUse::kSockets);
  EXPECT_EQ(dir.rfind(shortbase + "/sock-", 0), 0u) << dir;
  fs::remove(dir);
}

TEST(MakeTempDirTest, SocketDirsFallBackToTmpWhenTestTmpdirIsTooLongForASocketPath) {
  std::string deep = std::string(std::getenv("TEST_TMPDIR")) + "/" + std::string(90, 'd');
  fs::create_directories(deep);
  ScopedTestTmpdir env(deep);
  std::string files = MakeTempDir("f", TempDirUse::kFiles);
  EXPECT_EQ(files.rfind(deep, 0), 0u);
  std::string sockets = MakeTempDir("rpci-sock", TempDirUse::kSockets);
  EXPECT_EQ(sockets.rfind("/tmp/rpci-sock-", 0), 0u) << sockets;
  EXPECT_LT(sockets.size() + kSocketNameRoom, sizeof(sockaddr_un{}.sun_path));
  fs::remove(sockets);
}

}  // namespace
}  // namespace rpci::testing
