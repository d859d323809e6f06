#include "agent/session/session_server.h"

#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

rpci::v1::Region BarRegion() {
  rpci::v1::Region r;
  r.set_kind(rpci::v1::REGION_KIND_BAR);
  r.set_index(3);
  r.set_address(0x1000);
  r.set_size(4096);
  r.set_key(42);
  r.set_writable(true);
  return r;
}

TEST(RegionFromProtoTest, KnownKindAndIndexAreKept) {
  absl::StatusOr<session::RegionDesc> d = RegionFromProto(BarRegion());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->kind, session::RegionKind::kBar);
  EXPECT_EQ(d->index, 3);
  EXPECT_EQ(d->size, 4096u);
  EXPECT_TRUE(d->access & session::kAccessWrite);
}

TEST(RegionFromProtoTest, KindThatWouldWrapIntoAKnownOneIsRefused) {
  rpci::v1::Region r = BarRegion();
  r.set_kind(static_cast<rpci::v1::RegionKind>(258));  // 258 & 0xff == BAR
  EXPECT_EQ(RegionFromProto(r).status().code(), absl::StatusCode::kInvalidArgument);
  r.set_kind(rpci::v1::REGION_KIND_UNSPECIFIED);
  EXPECT_EQ(RegionFromProto(r).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RegionFromProtoTest, IndexThatWouldWrapIntoAnotherBarIsRefused) {
  rpci::v1::Region r = BarRegion();
  r.set_index(65539);  // 65539 & 0xffff == 3
  EXPECT_EQ(RegionFromProto(r).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rpci::agent
