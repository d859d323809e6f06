// BindToVfioPci against a temporary sysfs tree; the real binding is tested
// in the test machine (vfio_guest_test).
#include "agent/vfio/bind.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace rpci::agent::vfio {
namespace {

namespace fs = std::filesystem;

class BindTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("sysfs" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "bus/pci/devices" / kBdf);
    fs::create_directories(root_ / "bus/pci/drivers/nvme");
    std::ofstream(root_ / "bus/pci/drivers_probe");
    std::ofstream(dev() / "driver_override") << "(null)\n";
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path dev() const { return root_ / "bus/pci/devices" / kBdf; }
  void BindTo(const std::string& driver) {
    fs::create_directories(root_ / "bus/pci/drivers" / driver);
    fs::create_directory_symlink(root_ / "bus/pci/drivers" / driver, dev() / "driver");
  }
  std::string Override() const {
    std::ifstream in(dev() / "driver_override");
    std::string s;
    std::getline(in, s);
    return s;
  }
  BindOptions Options(bool allow_unbind = false) const { return {root_.string(), kBdf, allow_unbind}; }

  static constexpr char kBdf[] = "0000:03:00.0";
  fs::path root_;
};

TEST_F(BindTest, AFunctionAlreadyOnVfioPciIsLeftAlone) {
  BindTo("vfio-pci");
  EXPECT_TRUE(BindToVfioPci(Options()).ok());
  EXPECT_EQ(Override(), "(null)");
}

TEST_F(BindTest, RefusesToTakeAFunctionFromAHostDriverUnlessThePolicyAllows) {
  fs::create_directories(root_ / "bus/pci/drivers/vfio-pci");
  BindTo("nvme");
  absl::Status s = BindToVfioPci(Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("\"nvme\""), std::string::npos) << s;
  EXPECT_EQ(Override(), "(null)");  // nothing written
  EXPECT_EQ(BoundDriver(root_.string(), kBdf), "nvme");
}

TEST_F(BindTest, NeedsTheVfioPciDriver) {
  absl::Status s = BindToVfioPci(Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("not loaded"), std::string::npos) << s;
}

TEST_F(BindTest, AnUnboundFunctionGetsTheOverrideAndAProbe) {
  fs::create_directories(root_ / "bus/pci/drivers/vfio-pci");
  absl::Status s = BindToVfioPci(Options());
  // A directory tree binds nothing, so the check after the probe fails.
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("did not bind"), std::string::npos) << s;
  EXPECT_EQ(Override(), "vfio-pci");
  std::ifstream probe(root_ / "bus/pci/drivers_probe");
  std::string written;
  std::getline(probe, written);
  EXPECT_EQ(written, kBdf);
}

TEST_F(BindTest, AMissingFunctionIsNotFound) {
  BindOptions o = Options();
  o.bdf = "0000:99:00.0";
  EXPECT_EQ(BindToVfioPci(o).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rpci::agent::vfio
