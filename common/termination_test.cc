#include "common/termination.h"

#include <signal.h>

#include <thread>

#include "gtest/gtest.h"

namespace rpci {
namespace {

TEST(TerminationTest, SigtermEndsTheWait) {
  InstallTerminationHandler();
  EXPECT_FALSE(TerminationRequested());
  std::thread sender([] {
    usleep(100 * 1000);
    kill(getpid(), SIGTERM);
  });
  WaitForTermination();  // returns only because the signal arrived
  sender.join();
  EXPECT_TRUE(TerminationRequested());
}

}  // namespace
}  // namespace rpci
