// Who may read a session's key file on the host (plugin/container_edits.h).
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "plugin/container_edits.h"

namespace rpci::plugin {
namespace {

AttachedSession Session() {
  AttachedSession s;
  s.device_id = "dev-a-0000-3b-00-0";
  s.ticket.session_id = *session::SessionId::Parse("00112233aabbccdd");
  s.ticket.key = *session::SessionKey::FromBytes(std::string(32, '\x5a'));
  s.ca_pem = "-----BEGIN CERTIFICATE-----\n";
  return s;
}

struct stat StatOf(const std::string& path) {
  struct stat st = {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st;
}

TEST(SessionDirTest, WithoutASessionGroupOnlyRootReadsTheKey) {
  const std::string dir = ::rpci::testing::MakeTempDir("root-only");
  SessionPaths paths = PathsFor(dir, "/var/run/rpci", "dev-a-0000-3b-00-0");
  ASSERT_TRUE(WriteSessionDir(Session(), paths).ok());
  EXPECT_EQ(StatOf(paths.host_dir + "/key").st_mode & 0777, 0600u);
  EXPECT_EQ(StatOf(paths.host_dir + "/ca.crt").st_mode & 0777, 0644u);
}

TEST(SessionDirTest, WithASessionGroupItsMembersReadTheKeyAndOthersCannot) {
  const std::string dir = ::rpci::testing::MakeTempDir("group");
  const int gid = static_cast<int>(getgid());  // a group this process may give files to
  SessionPaths paths = PathsFor(dir, "/var/run/rpci", "dev-a-0000-3b-00-0");
  ASSERT_TRUE(WriteSessionDir(Session(), paths, gid).ok());
  struct stat key = StatOf(paths.host_dir + "/key");
  EXPECT_EQ(key.st_mode & 0777, 0640u);
  EXPECT_EQ(key.st_gid, static_cast<gid_t>(gid));
  struct stat d = StatOf(paths.host_dir);
  EXPECT_EQ(d.st_mode & 0777, 0750u);
  EXPECT_EQ(d.st_gid, static_cast<gid_t>(gid));
  // Rewritten (re-attach) it keeps both.
  ASSERT_TRUE(WriteSessionDir(Session(), paths, gid).ok());
  EXPECT_EQ(StatOf(paths.host_dir + "/key").st_mode & 0777, 0640u);
}

}  // namespace
}  // namespace rpci::plugin
