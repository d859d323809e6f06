#include "common/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"

namespace rpci {
namespace {

// An app that records the calls a daemon makes on it.
struct RecordingApp {
  absl::Status start_result = absl::OkStatus();
  int starts = 0;
  int stops = 0;
  absl::Status Start() {
    ++starts;
    return start_result;
  }
  void Stop() { ++stops; }
};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override { Logger::SetSink(&log_); }
  void TearDown() override { Logger::SetSink(&std::cerr); }
  std::ostringstream log_;
};

TEST_F(DaemonTest, LogLevelFlagSetsTheLevelAndAnUnknownNameExitsTwo) {
  std::string level = "info";
  FlagSet flags("d [flags]", "a daemon");
  AddLogLevelFlag(flags, &level);
  EXPECT_NE(flags.Help().find("debug, info, warn or error (default \"info\")"), std::string::npos) << flags.Help();
  ASSERT_TRUE(flags.Parse(std::vector<std::string>{"--log-level=error"}).ok());
  flags.Apply();
  EXPECT_EQ(level, "error");
  EXPECT_EQ(ApplyLogLevelFlag(level), std::nullopt);
  Logger("test").Warn("below the level");
  EXPECT_EQ(log_.str(), "");
  EXPECT_EQ(ApplyLogLevelFlag("loud"), 2);
  ASSERT_EQ(ApplyLogLevelFlag("info"), std::nullopt);
}

TEST_F(DaemonTest, NodeFlagDefaultsToNodeNameWhenSetAndNotEmpty) {
  unsetenv("NODE_NAME");
  std::string unset = "host-a";
  FlagSet a("d [flags]", "a daemon");
  AddNodeFlag(a, &unset, "node");
  EXPECT_EQ(unset, "host-a");
  setenv("NODE_NAME", "", 1);
  std::string empty = "host-a";
  FlagSet b("d [flags]", "a daemon");
  AddNodeFlag(b, &empty, "node");
  EXPECT_EQ(empty, "host-a");
  setenv("NODE_NAME", "node-7", 1);
  std::string node;
  FlagSet c("d [flags]", "a daemon");
  AddNodeFlag(c, &node, "this node's name");
  unsetenv("NODE_NAME");
  EXPECT_EQ(node, "node-7");
  EXPECT_NE(c.Help().find("this node's name (default \"node-7\")"), std::string::npos) << c.Help();
  ASSERT_TRUE(c.Parse(std::vector<std::string>{"--node=node-8"}).ok());
  c.Apply();
  EXPECT_EQ(node, "node-8");
}

TEST_F(DaemonTest, InvalidOptionsExitTwoAndOtherFailuresOne) {
  Logger log("test");
  EXPECT_EQ(CannotStart(log, absl::InvalidArgumentError("--listen: bad address")), 2);
  EXPECT_EQ(CannotStart(log, absl::UnavailableError("port in use")), 1);
  EXPECT_NE(log_.str().find("cannot start"), std::string::npos) << log_.str();
  EXPECT_NE(log_.str().find("port in use"), std::string::npos) << log_.str();
}

TEST_F(DaemonTest, AppThatCannotStartExitsOneWithoutWaitingOrStopping) {
  RecordingApp app;
  app.start_result = absl::UnavailableError("address in use");
  EXPECT_EQ(ServeUntilTerminated(app, Logger("test")), 1);
  EXPECT_EQ(app.starts, 1);
  EXPECT_EQ(app.stops, 0);
  EXPECT_NE(log_.str().find("cannot serve"), std::string::npos) << log_.str();
}

TEST_F(DaemonTest, SigtermStopsTheAppAndExitsZero) {
  RecordingApp app;
  std::thread sender([] {
    usleep(100 * 1000);
    kill(getpid(), SIGTERM);
  });
  EXPECT_EQ(ServeUntilTerminated(app, Logger("test")), 0);  // returns only because the signal arrived
  sender.join();
  EXPECT_EQ(app.starts, 1);
  EXPECT_EQ(app.stops, 1);
  EXPECT_NE(log_.str().find("signal received; shutting down"), std::string::npos) << log_.str();
}

}  // namespace
}  // namespace rpci
