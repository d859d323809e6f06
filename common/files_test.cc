#include "common/files.h"

#include <sys/stat.h>

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

}  // namespace
}  // namespace rpci
