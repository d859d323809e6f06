// The fake runtime's CDI injection behaves as the CDI library does for the
// cases rpci's specs meet: spec-wide edits once, device edits per device,
// unresolvable and conflicting ids refused.
#include "tests/kubelet/cdi_runtime.h"

#include <fstream>

#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci::testing {
namespace {

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

constexpr char kSpec[] = R"({
  "cdiVersion": "0.6.0", "kind": "rpci.io/claim",
  "containerEdits": {"env": ["RPCI_DEVICE_COUNT=2"]},
  "devices": [
    {"name": "u-a", "containerEdits": {"env": ["RPCI_0_DEVICE_ID=a"],
      "mounts": [{"hostPath": "/h/a", "containerPath": "/c/a", "options": ["ro", "bind"]}],
      "deviceNodes": [{"path": "/dev/infiniband/uverbs0", "permissions": "rw"}]}},
    {"name": "u-b", "containerEdits": {"env": ["RPCI_1_DEVICE_ID=b"]}}
  ]})";

TEST(CdiRuntimeTest, AppliesSpecEditsOnceAndEachDevicesEdits) {
  const std::string dir = MakeTempDir("rpci-cdi");
  Write(dir + "/a.json", kSpec);
  absl::StatusOr<v1beta1::ContainerAllocateResponse> r =
      InjectCdiDevices(dir, {"rpci.io/claim=u-a", "rpci.io/claim=u-b"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->envs().at("RPCI_DEVICE_COUNT"), "2");
  EXPECT_EQ(r->envs().at("RPCI_0_DEVICE_ID"), "a");
  EXPECT_EQ(r->envs().at("RPCI_1_DEVICE_ID"), "b");
  ASSERT_EQ(r->mounts_size(), 1);
  EXPECT_EQ(r->mounts(0).host_path(), "/h/a");
  EXPECT_TRUE(r->mounts(0).read_only());
  ASSERT_EQ(r->devices_size(), 1);
  EXPECT_EQ(r->devices(0).container_path(), "/dev/infiniband/uverbs0");
}

TEST(CdiRuntimeTest, UnknownIdIsUnresolvable) {
  const std::string dir = MakeTempDir("rpci-cdi");
  Write(dir + "/a.json", kSpec);
  absl::StatusOr<v1beta1::ContainerAllocateResponse> r = InjectCdiDevices(dir, {"rpci.io/claim=u-c"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("unresolvable CDI devices rpci.io/claim=u-c"), std::string::npos);
  EXPECT_EQ(InjectCdiDevices(dir, {"no-kind"}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CdiRuntimeTest, DeviceDeclaredTwiceConflicts) {
  const std::string dir = MakeTempDir("rpci-cdi");
  Write(dir + "/a.json", kSpec);
  Write(dir + "/b.json", kSpec);
  EXPECT_EQ(InjectCdiDevices(dir, {"rpci.io/claim=u-a"}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CdiRuntimeTest, DeviceWithoutEditsAndBrokenSpecAreRefused) {
  const std::string dir = MakeTempDir("rpci-cdi");
  Write(dir + "/a.json", R"({"cdiVersion": "0.6.0", "kind": "v/c", "devices": [{"name": "x"}]})");
  EXPECT_EQ(InjectCdiDevices(dir, {"v/c=x"}).status().code(), absl::StatusCode::kInvalidArgument);
  Write(dir + "/a.json", "{not json");
  EXPECT_EQ(InjectCdiDevices(dir, {"v/c=x"}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CdiRuntimeTest, ARuntimeAppliesCdiEditsOnTopOfTheKubeletsResponse) {
  const std::string dir = MakeTempDir("rpci-cdi");
  Write(dir + "/a.json", kSpec);
  v1beta1::ContainerAllocateResponse response;
  (*response.mutable_envs())["RPCI_POOL"] = "emu";
  (*response.mutable_envs())["RPCI_DEVICE_COUNT"] = "1";  // the spec's value wins
  response.add_mounts()->set_container_path("/c/kubelet");
  response.add_cdi_devices()->set_name("rpci.io/claim=u-a");
  absl::StatusOr<v1beta1::ContainerAllocateResponse> r = ApplyCdiDevices(response, dir);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->envs().at("RPCI_POOL"), "emu");
  EXPECT_EQ(r->envs().at("RPCI_DEVICE_COUNT"), "2");
  EXPECT_EQ(r->envs().at("RPCI_0_DEVICE_ID"), "a");
  ASSERT_EQ(r->mounts_size(), 2);
  EXPECT_EQ(r->mounts(0).container_path(), "/c/kubelet");
  EXPECT_EQ(r->mounts(1).container_path(), "/c/a");
  ASSERT_EQ(r->devices_size(), 1);
}

TEST(CdiRuntimeTest, ARuntimeWithoutCdiIgnoresTheIds) {
  v1beta1::ContainerAllocateResponse response;
  (*response.mutable_envs())["RPCI_POOL"] = "emu";
  response.add_cdi_devices()->set_name("rpci.io/claim=u-a");
  absl::StatusOr<v1beta1::ContainerAllocateResponse> r = ApplyCdiDevices(response, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->envs_size(), 1);
  EXPECT_EQ(r->mounts_size(), 0);
  // With CDI, an id no spec declares fails the container.
  const std::string dir = MakeTempDir("rpci-cdi");
  EXPECT_EQ(ApplyCdiDevices(response, dir).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rpci::testing
