#include "agent/registration/controller_link.h"

#include <memory>

#include "absl/time/clock.h"
#include "controller/testing/loopback_controller.h"
#include "controller/testing/registrations.h"
#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

using controller::testing::AgentWith;
using controller::testing::ClaimOf;
using controller::testing::NodeWith;
using controller::testing::WaitFor;

// The real controller on loopback (LoopbackController, one spare per node);
// the link under test speaks for device server "dev-a".
class ControllerLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kError);
    state_dir_ = controller::testing::MakeTempDir("link");
    StartController(0);
  }
  void TearDown() override {
    if (link_) link_->Stop();
    StopController();
  }

  void StartController(int port) {
    controller_ = std::make_unique<controller::testing::LoopbackController>(state_dir_, 1, port);
    ASSERT_TRUE(controller_->status().ok()) << controller_->status();
    port_ = controller_->port();
  }
  void StopController() { controller_.reset(); }

  void StartLink() {
    ControllerLinkOptions options;
    options.node = "dev-a";
    options.session_endpoint = "dev-a:7443";
    options.fabric_provider = "tcp;ofi_rxm";
    options.retry.initial_backoff = absl::Milliseconds(20);
    options.retry.max_backoff = absl::Milliseconds(200);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
    auto exported = AgentWith("dev-a", "emu", 1);
    link_ = std::make_unique<ControllerLink>(
        channel, options, &grants_,
        [exported] { return std::vector<rpci::v1::ExportedDevice>(exported.devices().begin(), exported.devices().end()); },
        [] { return std::vector<rpci::v1::DeviceHealthReport>(); });
    link_->Start();
  }

  // Registers compute node cn-1 and claims the device the controller assigns it.
  rpci::v1::ClaimResponse ClaimOnComputeNode() {
    auto plugin = rpci::v1::NodeRegistry::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials()));
    grpc::ClientContext reg_ctx;
    rpci::v1::RegisterResponse reg;
    EXPECT_TRUE(plugin->RegisterNode(&reg_ctx, NodeWith("cn-1", "emu"), &reg).ok());
    controller_->manager().Reconcile();  // keeps one spare on cn-1: our device
    grpc::ClientContext ctx;
    rpci::v1::ClaimResponse resp;
    grpc::Status s = plugin->Claim(&ctx, ClaimOf("cn-1", "dev-a-0000-3b-00-0", "trainer-0", "ml"), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }


  bool GrantValid(const rpci::v1::SessionGrant& g) {
    return grants_.Check(g.grant_id(), g.token(), absl::Now()).ok();
  }

  std::string state_dir_;
  std::unique_ptr<controller::testing::LoopbackController> controller_;
  int port_ = 0;  // the controller's, kept while it is stopped
  GrantTable grants_;
  std::unique_ptr<ControllerLink> link_;
};

TEST_F(ControllerLinkTest, ClaimedGrantReachesTheGrantTableAndReleaseRevokesIt) {
  StartLink();
  ASSERT_TRUE(WaitFor([&] { return link_->registered(); }));
  rpci::v1::ClaimResponse claim = ClaimOnComputeNode();
  ASSERT_TRUE(WaitFor([&] { return GrantValid(claim.grant()); }));
  EXPECT_FALSE(grants_.Check(claim.grant().grant_id(), "wrong token", absl::Now()).ok());

  auto plugin = rpci::v1::NodeRegistry::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials()));
  rpci::v1::ReleaseRequest rel;
  rel.set_node("cn-1");
  rel.set_device_id(claim.grant().device_id());
  rel.set_grant_id(claim.grant().grant_id());
  grpc::ClientContext ctx;
  rpci::v1::ReleaseResponse resp;
  ASSERT_TRUE(plugin->Release(&ctx, rel, &resp).ok());
  EXPECT_TRUE(WaitFor([&] { return !GrantValid(claim.grant()); }));
}

// A restarted agent's recovered sessions are judged by their grants only once
// the watch's first message (every live grant) is in the table.
TEST_F(ControllerLinkTest, TheGrantTableSaysOnceTheControllersFullSetHasArrived) {
  EXPECT_FALSE(grants_.FullSetReceived());
  StartLink();
  EXPECT_TRUE(WaitFor([&] { return grants_.FullSetReceived(); }));
}

TEST_F(ControllerLinkTest, ReRegistersAfterControllerRestartAndKeepsLiveGrants) {
  StartLink();
  ASSERT_TRUE(WaitFor([&] { return link_->registered(); }));
  rpci::v1::ClaimResponse claim = ClaimOnComputeNode();
  ASSERT_TRUE(WaitFor([&] { return GrantValid(claim.grant()); }));

  int port = port_;
  StopController();
  ASSERT_TRUE(WaitFor([&] { return !link_->registered(); }));
  StartController(port);
  ASSERT_TRUE(WaitFor([&] { return link_->registrations() >= 2 && link_->registered(); }));
  // The restarted controller rebuilt the attachment from its store; the
  // grant stays valid on the agent after the new full set.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_TRUE(GrantValid(claim.grant()));
}

TEST_F(ControllerLinkTest, UnreachableControllerIsRetriedUntilItAppears) {
  int port = port_;
  StopController();
  StartLink();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(link_->registered());
  StartController(port);
  EXPECT_TRUE(WaitFor([&] { return link_->registered(); }));
}

}  // namespace
}  // namespace rpci::agent
