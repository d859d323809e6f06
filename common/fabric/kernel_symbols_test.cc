#include "common/fabric/kernel_symbols.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <thread>

#include "common/fabric/fabric.h"
#include "gtest/gtest.h"

namespace rpci::fabric {
namespace {

bool Opens(const char* path) {
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return false;
  std::fclose(f);
  return true;
}

TEST(HiddenKernelSymbolsTest, KallsymsIsUnopenableOnTheHidingThreadOnlyAndOtherFilesOpen) {
  if (access("/proc/kallsyms", R_OK) != 0) GTEST_SKIP() << "no readable /proc/kallsyms here";
  const uint64_t refused_before = KernelSymbolOpensRefused();
  ASSERT_TRUE(Opens("/proc/kallsyms"));
  {
    HiddenKernelSymbols hidden;
    errno = 0;
    EXPECT_EQ(std::fopen("/proc/kallsyms", "r"), nullptr);
    EXPECT_EQ(errno, ENOENT);
    EXPECT_TRUE(Opens("/proc/self/status"));
    bool other_thread_opens = false;
    std::thread([&] { other_thread_opens = Opens("/proc/kallsyms"); }).join();
    EXPECT_TRUE(other_thread_opens);
    {
      HiddenKernelSymbols nested;
    }
    EXPECT_FALSE(Opens("/proc/kallsyms"));  // still hidden after a nested guard ends
  }
  EXPECT_TRUE(Opens("/proc/kallsyms"));
  EXPECT_EQ(KernelSymbolOpensRefused(), refused_before + 2);
}

// The process's first Open initialises libfabric: with host_memory_only the
// verbs provider's reads of /proc/kallsyms are refused, and the fabric works.
// (A fresh process: this test binary opens no fabric before.)
TEST(HiddenKernelSymbolsTest, AHostMemoryOnlyFirstOpenSkipsTheProvidersKernelSymbolReads) {
  if (access("/proc/kallsyms", R_OK) != 0) GTEST_SKIP() << "no readable /proc/kallsyms here";
  FabricConfig config = LoopbackConfig();
  config.host_memory_only = true;
  absl::StatusOr<std::unique_ptr<Fabric>> fabric = Fabric::Open(config);
  ASSERT_TRUE(fabric.ok()) << fabric.status();
  EXPECT_GE(KernelSymbolOpensRefused(), 1u);
  absl::StatusOr<std::unique_ptr<Endpoint>> a = (*fabric)->OpenEndpoint();
  absl::StatusOr<std::unique_ptr<Endpoint>> b = (*fabric)->OpenEndpoint();
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<PeerId> to_b = (*a)->InsertPeer((*b)->address());
  ASSERT_TRUE(to_b.ok()) << to_b.status();
  ASSERT_TRUE((*a)->Send(*to_b, "hello").ok());
  absl::StatusOr<std::string> got = (*b)->Recv(absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "hello");
}

}  // namespace
}  // namespace rpci::fabric
