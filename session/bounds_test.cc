#include "session/bounds.h"

#include "gtest/gtest.h"

namespace rpci::session {
namespace {

const RegionDesc kBar{RegionKind::kBar, kAccessRead, 0, 0, 4096, 1};
const RegionDesc kDma{RegionKind::kDma, kAccessRead | kAccessWrite, 0, 8192, 65536, 2};

TEST(CheckAccessTest, AllowsAccessesInsideTheRegion) {
  EXPECT_TRUE(CheckAccess(kBar, 0, 4, false).ok());
  EXPECT_TRUE(CheckAccess(kBar, 4092, 4, false).ok());
  EXPECT_TRUE(CheckAccess(kDma, 0, 65536, true).ok());
}

TEST(CheckAccessTest, RefusesOutOfBoundsIncludingOverflow) {
  EXPECT_EQ(CheckAccess(kBar, 4093, 4, false).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(CheckAccess(kBar, 4096, 1, false).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(CheckAccess(kBar, 8, ~0ull - 2, false).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(CheckAccess(kBar, 0, 0, false).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ErrorCodeFor(CheckAccess(kBar, 4096, 4, false)), ErrorCode::kOutOfBounds);
}

TEST(CheckAccessTest, RefusesWriteToReadOnlyRegion) {
  absl::Status s = CheckAccess(kBar, 0, 4, true);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrorCodeFor(s), ErrorCode::kReadOnly);
}

TEST(FindRegionTest, FindsByKindAndIndex) {
  std::vector<RegionDesc> regions{kBar, kDma};
  EXPECT_EQ(FindRegion(regions, RegionKind::kDma)->key, 2u);
  EXPECT_EQ(FindRegion(regions, RegionKind::kBar, 2).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rpci::session
