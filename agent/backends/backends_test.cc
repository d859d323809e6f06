#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "agent/backends/emu_backend.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

namespace fs = std::filesystem;

TEST(EmuBackendTest, AccessesAreBoundsChecked) {
  auto b = *EmuBackend::Create(4096);
  uint8_t buf[8];
  EXPECT_EQ(b->ReadBar(2, 0, 4, buf).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b->ReadBar(0, 4096, 4, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(b->WriteRegister(0, 4094, 4, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->WriteRegister(0, 4092, 8, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->WriteRegister(0, 4096, 8, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(b->WriteRegister(0, UINT64_MAX - 3, 4, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(EmuBackend::Create(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmuBackend::Create(uint64_t{1} << 40).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rpci::agent
