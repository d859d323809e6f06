#include "tests/kubelet/fake_kubelet.h"

#include <sys/stat.h>

#include "absl/strings/match.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci::testing {
namespace {

// The fake kubelet's own checks, the way the real kubelet answers Register.
class FakeKubeletTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("rpci-kubelet", TempDirUse::kSockets);
    kubelet_ = std::make_unique<FakeKubelet>(dir_ + "/dp", dir_ + "/pr.sock");
    ASSERT_TRUE(kubelet_->Start().ok());
  }

  grpc::Status Register(const std::string& version, const std::string& resource, const std::string& endpoint) {
    auto stub = v1beta1::Registration::NewStub(
        grpc::CreateChannel("unix:" + kubelet_->kubelet_socket(), grpc::InsecureChannelCredentials()));
    v1beta1::RegisterRequest req;
    req.set_version(version);
    req.set_resource_name(resource);
    req.set_endpoint(endpoint);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1beta1::Empty resp;
    return stub->Register(&ctx, req, &resp);
  }

  std::string dir_;
  std::unique_ptr<FakeKubelet> kubelet_;
};

TEST_F(FakeKubeletTest, RejectsAnUnsupportedVersion) {
  grpc::Status s = Register("v1alpha", "rpci.io/emu", "p.sock");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "v1alpha")) << s.error_message();
}

TEST_F(FakeKubeletTest, RejectsResourceNamesThatAreNotExtended) {
  for (const char* name : {"emu", "kubernetes.io/emu", "rpci.io/", "Bad_Domain/emu", "rpci.io/-emu"}) {
    EXPECT_EQ(Register("v1beta1", name, "p.sock").error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
  }
  EXPECT_EQ(Register("v1beta1", "rpci.io/emu", "../p.sock").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(FakeKubeletTest, RegisterFailsWhenThePluginIsNotServing) {
  grpc::Status s = Register("v1beta1", "rpci.io/emu", "nobody.sock");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(kubelet_->registrations().empty());
}

TEST_F(FakeKubeletTest, RestartRemovesEverySocketAndServesAgain) {
  const std::string stray = dir_ + "/dp/other.sock";
  v1beta1::DevicePlugin::Service plugin;  // another plugin's socket
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + stray, grpc::InsecureServerCredentials());
  builder.RegisterService(&plugin);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  struct stat st;
  ASSERT_EQ(stat(stray.c_str(), &st), 0);
  ASSERT_TRUE(kubelet_->Restart().ok());
  EXPECT_NE(stat(stray.c_str(), &st), 0);
  EXPECT_EQ(stat(kubelet_->kubelet_socket().c_str(), &st), 0);
  EXPECT_EQ(stat(kubelet_->pod_resources_socket().c_str(), &st), 0);
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace rpci::testing
