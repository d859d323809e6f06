#include "agent/session/throttle.h"

#include <thread>

#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(ByteBudgetTest, ASessionWithinItsBurstIsNotThrottled) {
  ByteBudget budget(1000, 4000, kStart);
  EXPECT_FALSE(budget.Spend(4000, kStart));
  EXPECT_FALSE(budget.throttled());
}

TEST(ByteBudgetTest, SpendingPastTheBudgetThrottlesUntilItHasFilledUpAgain) {
  ByteBudget budget(1000, 4000, kStart);
  EXPECT_FALSE(budget.Spend(3000, kStart));
  EXPECT_TRUE(budget.Spend(3000, kStart));  // 2000 short
  // Refilled to 1000 of 4000: still throttled, and small pushes keep it so.
  EXPECT_TRUE(budget.Spend(10, kStart + absl::Seconds(3)));
  // Full again (6 s at 1000/s from -1010): no longer throttled.
  EXPECT_FALSE(budget.Spend(10, kStart + absl::Seconds(9)));
}

TEST(ByteBudgetTest, ASteadyRateUnderTheBudgetIsNeverThrottled) {
  ByteBudget budget(1000, 1000, kStart);
  for (int i = 1; i <= 100; ++i) EXPECT_FALSE(budget.Spend(900, kStart + absl::Seconds(i))) << i;
}

TEST(ByteBudgetTest, ASteadyRateOverTheBudgetStaysThrottled) {
  ByteBudget budget(1000, 1000, kStart);
  EXPECT_FALSE(budget.Spend(1000, kStart));
  for (int i = 1; i <= 100; ++i) EXPECT_TRUE(budget.Spend(1100, kStart + absl::Seconds(i))) << i;
}

TEST(RecentDemandTest, NobodyElseAskedWhileASessionIsAloneOrAfterTheOthersWentQuiet) {
  const absl::Duration window = absl::Seconds(1);
  RecentDemand demand;
  EXPECT_FALSE(demand.OtherThan(7, kStart, window));
  demand.Note(7, kStart);
  demand.Note(7, kStart + absl::Milliseconds(500));
  EXPECT_FALSE(demand.OtherThan(7, kStart + absl::Milliseconds(600), window));  // only itself
  demand.Note(9, kStart + absl::Milliseconds(700));
  EXPECT_TRUE(demand.OtherThan(7, kStart + absl::Milliseconds(800), window));
  EXPECT_TRUE(demand.OtherThan(9, kStart + absl::Milliseconds(800), window));  // 7 asked 300 ms before
  EXPECT_FALSE(demand.OtherThan(7, kStart + absl::Milliseconds(1700), window));  // 9 quiet for the window
  EXPECT_TRUE(demand.OtherThan(11, kStart + absl::Milliseconds(1600), window));
}

TEST(RecentDemandTest, TheNewestOtherSessionCountsWhicheverAskedLast) {
  const absl::Duration window = absl::Seconds(1);
  RecentDemand demand;
  demand.Note(9, kStart);
  for (int i = 1; i <= 10; ++i) demand.Note(7, kStart + absl::Milliseconds(100 * i));
  // 7 asking again and again does not push 9 out.
  EXPECT_TRUE(demand.OtherThan(7, kStart + absl::Milliseconds(999), window));
  EXPECT_FALSE(demand.OtherThan(7, kStart + absl::Seconds(1), window));
  demand.Note(5, kStart + absl::Seconds(2));
  demand.Note(7, kStart + absl::Seconds(3));
  EXPECT_TRUE(demand.OtherThan(7, kStart + absl::Milliseconds(2999), window));  // 5, not 9
  EXPECT_TRUE(demand.OtherThan(5, kStart + absl::Milliseconds(3999), window));
  EXPECT_FALSE(demand.OtherThan(5, kStart + absl::Seconds(4), window));
}

TEST(ThreadNiceTest, SetsOnlyTheCallingThread) {
  absl::StatusOr<int> before = ThreadNice();
  ASSERT_TRUE(before.ok()) << before.status();
  int inside = 0, after_other = 0;
  std::thread other([&] {
    ASSERT_TRUE(SetThreadNice(std::min(19, *before + 5)).ok());
    inside = ThreadNice().value_or(-100);
  });
  other.join();
  after_other = ThreadNice().value_or(-100);
  EXPECT_EQ(inside, std::min(19, *before + 5));
  EXPECT_EQ(after_other, *before);
}

}  // namespace
}  // namespace rpci::agent
