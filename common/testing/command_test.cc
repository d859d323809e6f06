#include "common/testing/command.h"

#include "gtest/gtest.h"

namespace rpci::testing {
namespace {

TEST(RunCommandTest, CapturesStdoutAndTheExitStatus) {
  CommandResult r = RunCommand("printf 'a\\nb'; echo err >&2; exit 3");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.output, "a\nb");
}

TEST(RunCommandTest, StderrIsCapturedOnlyWhenRedirected) {
  EXPECT_EQ(RunCommand("echo out; echo err >&2").output, "out\n");
  CommandResult r = RunCommand("(echo out; echo err >&2) 2>&1");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "out\nerr\n");
}

TEST(RunCommandTest, ASignalledCommandHasNoExitCode) {
  CommandResult r = RunCommand("kill -TERM $$");
  EXPECT_EQ(r.exit_code, -1);
}

}  // namespace
}  // namespace rpci::testing
