#include "common/dir_watch.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <string>

#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci {
namespace {

void Touch(const std::string& path) { close(open(path.c_str(), O_CREAT | O_WRONLY, 0600)); }

TEST(DirWatch, ReportsCreatedMovedInAndRemovedNames) {
  const std::string dir = testing::MakeTempDir("dir_watch");
  auto watch = DirWatch::Open(dir, /*removals=*/true);
  ASSERT_TRUE(watch.ok()) << watch.status();
  Touch(dir + "/a.sock");
  Touch(dir + "/.tmp");
  ASSERT_EQ(rename((dir + "/.tmp").c_str(), (dir + "/b.sock").c_str()), 0);
  ASSERT_EQ(unlink((dir + "/a.sock").c_str()), 0);
  std::vector<DirEvent> events;
  for (int i = 0; i < 20 && events.size() < 4; ++i) {
    for (DirEvent& e : (*watch)->Wait(absl::Milliseconds(100))) events.push_back(std::move(e));
  }
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].name, "a.sock");
  EXPECT_FALSE(events[0].removed);
  EXPECT_EQ(events[1].name, ".tmp");
  EXPECT_EQ(events[2].name, "b.sock");
  EXPECT_FALSE(events[2].removed);
  EXPECT_EQ(events[3].name, "a.sock");
  EXPECT_TRUE(events[3].removed);
}

TEST(DirWatch, WithoutRemovalsIgnoresDeletesAndTimesOutQuietly) {
  const std::string dir = testing::MakeTempDir("dir_watch");
  Touch(dir + "/old");
  auto watch = DirWatch::Open(dir);
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_EQ(unlink((dir + "/old").c_str()), 0);
  EXPECT_TRUE((*watch)->Wait(absl::Milliseconds(50)).empty());
}

TEST(DirWatch, MissingDirectoryIsInternalNamingIt) {
  auto watch = DirWatch::Open("/nonexistent/rpci-dir-watch");
  ASSERT_FALSE(watch.ok());
  EXPECT_EQ(watch.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(watch.status().message().find("/nonexistent/rpci-dir-watch"), std::string::npos);
}

}  // namespace
}  // namespace rpci
