#include "tests/harness/netns.h"

#include "gtest/gtest.h"

namespace rpci::testing {
namespace {

TEST(VethPairTest, HostsReachEachOtherUntilPartitioned) {
  std::string why;
  if (!CanUseNetworkNamespaces(&why)) GTEST_SKIP() << why;
  absl::StatusOr<VethPair> pair = VethPair::Create("nstest");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_TRUE(RunCommand(pair->ExecIn(0, {"ping", "-c1", "-W2", pair->addr_b()})).ok());
  ASSERT_TRUE(pair->SetLinkUp(false).ok());
  EXPECT_FALSE(RunCommand(pair->ExecIn(0, {"ping", "-c1", "-W1", pair->addr_b()})).ok());
  ASSERT_TRUE(pair->SetLinkUp(true).ok());
  EXPECT_TRUE(RunCommand(pair->ExecIn(0, {"ping", "-c1", "-W2", pair->addr_b()})).ok());
}

TEST(VethPairTest, TotalLossDropsEverythingAndClearingRestores) {
  std::string why;
  if (!CanUseNetworkNamespaces(&why)) GTEST_SKIP() << why;
  absl::StatusOr<VethPair> pair = VethPair::Create("loss");
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE(pair->SetImpairment(100, 0).ok());
  EXPECT_FALSE(RunCommand(pair->ExecIn(0, {"ping", "-c1", "-W1", pair->addr_b()})).ok());
  ASSERT_TRUE(pair->SetImpairment(0, 0).ok());
  EXPECT_TRUE(RunCommand(pair->ExecIn(0, {"ping", "-c1", "-W2", pair->addr_b()})).ok());
}

TEST(VethPairTest, NamespacesAreRemovedOnDestruction) {
  std::string why;
  if (!CanUseNetworkNamespaces(&why)) GTEST_SKIP() << why;
  std::string ns;
  {
    absl::StatusOr<VethPair> pair = VethPair::Create("gone");
    ASSERT_TRUE(pair.ok()) << pair.status();
    ns = pair->ns_a();
    EXPECT_TRUE(RunCommand({"ip", "netns", "exec", ns, "true"}).ok());
  }
  EXPECT_FALSE(RunCommand({"ip", "netns", "exec", ns, "true"}).ok());
}

}  // namespace
}  // namespace rpci::testing
