#include "common/retry_loop.h"

#include <atomic>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace rpci {
namespace {

TEST(RetryLoopTest, BacksOffBetweenFailuresAndResetsAfterProgress) {
  RetryLoop::Options options;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(80);
  RetryLoop loop("test", options, Logger("test"));
  std::mutex mu;
  std::vector<absl::Time> starts;
  std::atomic<int> calls{0};
  loop.Start([&]() -> absl::Status {
    {
      std::lock_guard<std::mutex> lock(mu);
      starts.push_back(absl::Now());
    }
    int n = ++calls;
    return n == 5 ? absl::OkStatus() : absl::UnavailableError("down");
  });
  while (calls < 7) absl::SleepFor(absl::Milliseconds(5));
  loop.Stop();
  std::lock_guard<std::mutex> lock(mu);
  // Gaps after failures 1..4: 20, 40, 80, 80 ms; attempt 5 succeeded, so 6
  // starts at once; 6 failed, so 7 waits the initial backoff again.
  auto gap = [&](int i) { return starts[i] - starts[i - 1]; };
  EXPECT_GE(gap(1), absl::Milliseconds(20));
  EXPECT_GE(gap(2), absl::Milliseconds(40));
  EXPECT_GE(gap(3), absl::Milliseconds(80));
  EXPECT_GE(gap(4), absl::Milliseconds(80));
  EXPECT_LT(gap(4), absl::Milliseconds(160));
  EXPECT_LT(gap(5), absl::Milliseconds(15));
  EXPECT_GE(gap(6), absl::Milliseconds(20));
  EXPECT_LT(gap(6), absl::Milliseconds(40));
}

TEST(RetryLoopTest, StopRunsTheCancelHookToInterruptABlockedAttempt) {
  RetryLoop loop("blocked", {}, Logger("test"));
  std::mutex mu;
  std::condition_variable cv;
  bool cancelled = false;
  std::atomic<bool> entered{false};
  loop.Start([&]() -> absl::Status {
    loop.SetCancel([&] {
      std::lock_guard<std::mutex> lock(mu);
      cancelled = true;
      cv.notify_all();
    });
    entered = true;
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return cancelled; });  // a call only cancellation ends
    return absl::CancelledError("cancelled");
  });
  while (!entered) absl::SleepFor(absl::Milliseconds(1));
  loop.Stop();
  EXPECT_TRUE(cancelled);
}

TEST(RetryLoopTest, ClearingTheCancelHookWaitsForARunningHook) {
  // The hook references the attempt's locals (as ControllerLink's does its
  // ClientContext); once SetCancel(nullptr) returns they may go away, so a
  // hook Stop() is running must have finished by then.
  RetryLoop loop("clearing", {}, Logger("test"));
  std::atomic<bool> installed{false};
  std::atomic<bool> hook_started{false};
  std::atomic<bool> finished_before_clear_returned{false};
  loop.Start([&]() -> absl::Status {
    std::atomic<bool> hook_done{false};
    loop.SetCancel([&] {
      hook_started = true;
      absl::SleepFor(absl::Milliseconds(100));
      hook_done = true;
    });
    installed = true;
    while (!hook_started) absl::SleepFor(absl::Milliseconds(1));
    loop.SetCancel(nullptr);
    finished_before_clear_returned = hook_done.load();
    return absl::CancelledError("cancelled");
  });
  while (!installed) absl::SleepFor(absl::Milliseconds(1));
  loop.Stop();
  EXPECT_TRUE(finished_before_clear_returned);
}

}  // namespace
}  // namespace rpci
