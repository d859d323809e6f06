#include "plugin/preferred.h"

#include "gtest/gtest.h"

namespace rpci::plugin {
namespace {

using Ids = std::vector<std::string>;

TEST(PreferDevicesTest, BestLocalityFirst) {
  std::vector<Candidate> c = {{"a0", "a", 3}, {"b0", "b", 1}, {"a1", "a", 3}};
  EXPECT_EQ(PreferDevices(c, {}, 1), Ids({"b0"}));
}

TEST(PreferDevicesTest, MultiDeviceRequestStaysOnOneServerThatFits) {
  std::vector<Candidate> c = {{"a0", "a", 3}, {"b0", "b", 3}, {"b1", "b", 3}, {"c0", "c", 3}};
  EXPECT_EQ(PreferDevices(c, {}, 2), Ids({"b0", "b1"}));
}

TEST(PreferDevicesTest, MustIncludeFirstThenItsServer) {
  std::vector<Candidate> c = {{"a0", "a", 1}, {"a1", "a", 1}, {"b0", "b", 3}, {"b1", "b", 3}};
  EXPECT_EQ(PreferDevices(c, {"b1"}, 2), Ids({"b1", "b0"}));
}

TEST(PreferDevicesTest, SpillsToLargestGroupWhenNoServerFits) {
  std::vector<Candidate> c = {{"a0", "a", 3}, {"b0", "b", 3}, {"b1", "b", 3}, {"c0", "c", 3}};
  Ids got = PreferDevices(c, {}, 3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "b0");
  EXPECT_EQ(got[1], "b1");
}

TEST(PreferDevicesTest, FewerWhenNotEnoughAndNothingForZeroOrNegative) {
  std::vector<Candidate> c = {{"a0", "a", 3}};
  EXPECT_EQ(PreferDevices(c, {}, 4), Ids({"a0"}));
  EXPECT_TRUE(PreferDevices(c, {}, 0).empty());
  EXPECT_TRUE(PreferDevices(c, {}, -1).empty());
}

TEST(LocalityRankTest, ShmThenVerbsWithNicThenVerbsThenTcp) {
  rpci::v1::Assignment a;
  a.set_agent_fabric_provider("shm");
  EXPECT_EQ(LocalityRank(a), 0);
  a.set_agent_fabric_provider("verbs;ofi_rxm");
  EXPECT_EQ(LocalityRank(a), 2);
  a.mutable_device()->add_local_nics("mlx5_0");
  EXPECT_EQ(LocalityRank(a), 1);
  a.set_agent_fabric_provider("tcp;ofi_rxm");
  EXPECT_EQ(LocalityRank(a), 3);
  a.set_agent_fabric_provider("");
  EXPECT_EQ(LocalityRank(a), 4);
}

}  // namespace
}  // namespace rpci::plugin
