#include "librpci/dma_allocator.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace rpci::lib {
namespace {

TEST(DmaAllocatorTest, AllocationsAreAlignedDisjointAndInsideTheSpace) {
  DmaAllocator a(1 << 16);
  auto x = a.Allocate(100, 64);
  auto y = a.Allocate(4096, 4096);
  auto z = a.Allocate(1, 1);
  ASSERT_TRUE(x.ok() && y.ok() && z.ok());
  EXPECT_EQ(*x % 64, 0u);
  EXPECT_EQ(*y % 4096, 0u);
  EXPECT_TRUE(*x + 100 <= *y || *y + 4096 <= *x);
  EXPECT_TRUE(*z >= *x + 100 || *z + 1 <= *x);
  EXPECT_LE(*y + 4096, a.capacity());
  EXPECT_EQ(a.free_bytes(), (1u << 16) - 100 - 4096 - 1);
}

TEST(DmaAllocatorTest, ExhaustionIsResourceExhaustedAndFreeingMakesRoomAgain) {
  DmaAllocator a(8192);
  auto x = a.Allocate(8192, 1);
  ASSERT_TRUE(x.ok());
  auto y = a.Allocate(1, 1);
  EXPECT_EQ(y.status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(a.Free(*x).ok());
  EXPECT_TRUE(a.Allocate(8192, 1).ok());
}

TEST(DmaAllocatorTest, FragmentedSpaceRefusesABigBufferUntilNeighboursMerge) {
  DmaAllocator a(16 * 1024);
  std::vector<uint64_t> blocks;
  for (int i = 0; i < 16; ++i) blocks.push_back(*a.Allocate(1024, 1024));
  for (int i = 0; i < 16; i += 2) ASSERT_TRUE(a.Free(blocks[i]).ok());
  // Half the space is free, but only in 1 KiB holes.
  EXPECT_EQ(a.free_bytes(), 8u * 1024);
  EXPECT_EQ(a.largest_free(), 1024u);
  auto big = a.Allocate(2048, 1);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(big.status().message().find("largest free range 1024"), std::string::npos) << big.status();
  // Freeing the blocks between holes merges them back into one range.
  for (int i = 1; i < 16; i += 2) ASSERT_TRUE(a.Free(blocks[i]).ok());
  EXPECT_EQ(a.largest_free(), 16u * 1024);
  EXPECT_TRUE(a.Allocate(16 * 1024, 1).ok());
}

TEST(DmaAllocatorTest, DoubleFreeAndUnknownOffsetsAreNotFound) {
  DmaAllocator a(4096);
  auto x = *a.Allocate(128, 64);
  ASSERT_TRUE(a.Free(x).ok());
  EXPECT_EQ(a.Free(x).code(), absl::StatusCode::kNotFound);
  auto y = *a.Allocate(256, 64);
  EXPECT_EQ(a.Free(y + 64).code(), absl::StatusCode::kNotFound);  // inside, not the start
  EXPECT_EQ(a.Free(1 << 20).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(a.live(), 1u);
}

TEST(DmaAllocatorTest, BadRequestsAreInvalidArgument) {
  DmaAllocator a(4096);
  EXPECT_EQ(a.Allocate(0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Allocate(16, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Allocate(16, 48).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Allocate(16, 8192).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Allocate(~uint64_t{0}, 1).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(DmaAllocatorTest, RandomAllocFreeKeepsAccountingExactAndRangesDisjoint) {
  DmaAllocator a(1 << 20);
  std::mt19937_64 rng(42);
  std::map<uint64_t, uint64_t> live;
  for (int step = 0; step < 5000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      const uint64_t size = 1 + rng() % 20000, align = uint64_t{1} << (rng() % 13);
      auto off = a.Allocate(size, align);
      if (!off.ok()) continue;
      ASSERT_EQ(*off % align, 0u);
      auto after = live.lower_bound(*off);
      if (after != live.end()) {
        ASSERT_LE(*off + size, after->first);
      }
      if (after != live.begin()) {
        ASSERT_LE(std::prev(after)->first + std::prev(after)->second, *off);
      }
      live[*off] = size;
    } else {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      ASSERT_TRUE(a.Free(it->first).ok());
      live.erase(it);
    }
    uint64_t used = 0;
    for (const auto& [o, s] : live) used += s;
    ASSERT_EQ(a.free_bytes(), a.capacity() - used);
  }
  for (const auto& [o, s] : live) ASSERT_TRUE(a.Free(o).ok());
  EXPECT_EQ(a.largest_free(), a.capacity());
}

}  // namespace
}  // namespace rpci::lib
