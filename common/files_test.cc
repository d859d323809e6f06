#include "common/files.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

TEST(WriteFileAtomicallyTest, ReplacesTheFileWholeWithTheModeAndLeavesNoTempFile) {
  const std::string dir = testing::MakeTempDir("files");
  const std::string path = dir + "/key";
  ASSERT_TRUE(WriteFileAtomically(path, "old\n", 0644).ok());
  ASSERT_TRUE(WriteFileAtomically(path, "secret\n", 0600).ok());
  EXPECT_EQ(Read(path), "secret\n");
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(stat((path + ".tmp").c_str(), &st), 0);
}

TEST(WriteFileAtomicallyTest, AMissingDirectoryIsNotFoundAndNamesTheFile) {
  const std::string path = testing::MakeTempDir("files") + "/no/such/dir/file";
  absl::Status s = WriteFileAtomically(path, "x", 0644);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find(path + ".tmp"), std::string::npos) << s;
}

TEST(WriteFileAtomicallyTest, StreamedPiecesLargerThanTheBufferArriveWholeAndAreCounted) {
  const std::string path = testing::MakeTempDir("files") + "/snapshot";
  std::string expected;
  absl::StatusOr<size_t> written = WriteFileAtomically(
      path,
      [&expected](BufferedFileWriter& w) {
        // Small pieces that fill the 1 MiB buffer several times, and one
        // piece larger than the buffer.
        for (int i = 0; i < 300000; ++i) {
          const std::string piece = std::to_string(i) + ",";
          w.Add(piece);
          expected += piece;
        }
        const std::string big(3 << 20, 'x');
        w.Add(big);
        expected += big;
      },
      0600);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, expected.size());
  EXPECT_EQ(Read(path), expected);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(stat((path + ".tmp").c_str(), &st), 0);
}

// The directory synced after the rename is the file's own, also for a bare
// name (the working directory).
TEST(WriteFileAtomicallyTest, ABareNameIsWrittenInTheWorkingDirectory) {
  const std::string dir = testing::MakeTempDir("files");
  char old_cwd[4096];
  ASSERT_NE(getcwd(old_cwd, sizeof(old_cwd)), nullptr);
  ASSERT_EQ(chdir(dir.c_str()), 0);
  absl::Status s = WriteFileAtomically("bare", "contents", 0644);
  ASSERT_EQ(chdir(old_cwd), 0);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Read(dir + "/bare"), "contents");
}

TEST(WriteFileAtomicallyTest, AWriteThatFailsHalfwayLeavesTheOldFileAndNoTempFile) {
  const std::string path = testing::MakeTempDir("files") + "/state";
  ASSERT_TRUE(WriteFileAtomically(path, "old", 0600).ok());
  // A file-size limit stands in for a full disk: the write past 64 KiB fails
  // (EFBIG; SIGXFSZ ignored).
  struct rlimit saved {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  sighandler_t old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 64 << 10;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  absl::StatusOr<size_t> written = WriteFileAtomically(
      path,
      [](BufferedFileWriter& w) {
        for (int i = 0; i < 1000; ++i) w.Add(std::string(4096, 'n'));
      },
      0600);
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);
  EXPECT_EQ(written.status().code(), absl::StatusCode::kInternal) << written.status();
  EXPECT_NE(written.status().message().find(path + ".tmp"), std::string::npos) << written.status();
  EXPECT_EQ(Read(path), "old");
  struct stat st {};
  EXPECT_NE(stat((path + ".tmp").c_str(), &st), 0);
}

}  // namespace
}  // namespace rpci
