#include "controller/service.h"

#include <memory>
#include <thread>

#include "common/cert_authority.h"
#include "common/grpc_util.h"
#include "common/tls.h"
#include "controller/local_store.h"
#include "controller/testing/registrations.h"
#include "gtest/gtest.h"

namespace rpci::controller {
namespace {

using rpci::v1::AgentRegistry;
using rpci::v1::NodeRegistry;
using testing::AgentWith;
using testing::ClaimOf;
using testing::NodeWith;

constexpr absl::Duration kCallTimeout = absl::Seconds(5);

// The controller's gRPC services on loopback with mTLS, against a real pool
// manager on a local store; agents and plugins are gRPC clients holding
// certificates from the test CA.
class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kWarn);
    auto ca = CertAuthority::Create("rpci-test-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_unique<CertAuthority>(*std::move(ca));
    auto store = LocalStore::Open(testing::MakeTempDir("svc"), Clock::Real());
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    PoolManager::Options options;
    options.default_pool.spares_per_node = 1;
    manager_ = std::make_unique<PoolManager>(store_.get(), Clock::Real(), options);
    service_ = std::make_unique<ControllerService>(manager_.get(), PeerAuthorizer(true), [this]() -> absl::Status {
      if (leader_) return absl::OkStatus();
      return absl::UnavailableError("not the leader; leader is controller-b");
    });
    auto server_tls = ca_->Issue("controller", {"localhost"}, {"127.0.0.1"});
    ASSERT_TRUE(server_tls.ok());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", MakeServerCredentials(*server_tls), &port_);
    builder.RegisterService(service_->agent_registry());
    builder.RegisterService(service_->node_registry());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override {
    service_->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }

  std::shared_ptr<grpc::Channel> ChannelAs(const std::string& common_name) {
    auto tls = ca_->Issue(common_name, {}, {});
    EXPECT_TRUE(tls.ok());
    return ChannelWith(MakeChannelCredentials(*tls));
  }

  std::shared_ptr<grpc::Channel> ChannelWith(std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), creds, args);
  }

  static void Deadline(grpc::ClientContext* ctx, int seconds = 5) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  }

  // A watch request for `node`; its stream's context gets a 20 s deadline.
  template <typename Request>
  static Request WatchOf(const std::string& node, grpc::ClientContext* ctx) {
    Deadline(ctx, 20);
    Request req;
    req.set_node(node);
    return req;
  }

  std::unique_ptr<CertAuthority> ca_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<PoolManager> manager_;
  std::unique_ptr<ControllerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::atomic<bool> leader_{true};
  int port_ = 0;
};

TEST_F(ServiceTest, ClaimedGrantReachesTheOwningAgentOverWatchGrants) {
  auto agent = AgentRegistry::NewStub(ChannelAs("agent:dev-a"));
  auto plugin = NodeRegistry::NewStub(ChannelAs("plugin:cn-1"));
  absl::StatusOr<rpci::v1::RegisterResponse> registered =
      UnaryCall(*agent, &AgentRegistry::Stub::RegisterAgent, AgentWith("dev-a", "emu", 2), kCallTimeout, "");
  ASSERT_TRUE(registered.ok()) << registered.status();
  EXPECT_EQ(registered->heartbeat_interval_seconds(), 10u);
  grpc::ClientContext grants_ctx;
  auto grants = agent->WatchGrants(&grants_ctx, WatchOf<rpci::v1::WatchGrantsRequest>("dev-a", &grants_ctx));
  rpci::v1::GrantUpdate update;
  ASSERT_TRUE(grants->Read(&update));  // the initial full set: empty
  EXPECT_EQ(update.granted_size(), 0);

  ASSERT_TRUE(UnaryCall(*plugin, &NodeRegistry::Stub::RegisterNode, NodeWith("cn-1", "emu"), kCallTimeout, "").ok());
  grpc::ClientContext assign_ctx;
  auto assignments =
      plugin->WatchAssignments(&assign_ctx, WatchOf<rpci::v1::WatchAssignmentsRequest>("cn-1", &assign_ctx));
  rpci::v1::AssignmentSet set;
  ASSERT_TRUE(assignments->Read(&set));
  EXPECT_EQ(set.assignments_size(), 0);
  manager_->Reconcile();  // the default pool keeps one spare on cn-1
  ASSERT_TRUE(assignments->Read(&set));
  ASSERT_EQ(set.assignments_size(), 1);
  EXPECT_EQ(set.assignments(0).agent_session_endpoint(), "dev-a:7443");
  EXPECT_EQ(set.assignments(0).device().health(), rpci::v1::DEVICE_HEALTH_HEALTHY);

  const rpci::v1::ClaimRequest claim = ClaimOf("cn-1", set.assignments(0).device().id(), "trainer-0", "ml");
  absl::StatusOr<rpci::v1::ClaimResponse> claimed = UnaryCall(*plugin, &NodeRegistry::Stub::Claim, claim, kCallTimeout, "");
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  const rpci::v1::ClaimResponse& granted = *claimed;
  ASSERT_TRUE(grants->Read(&update));
  ASSERT_EQ(update.granted_size(), 1);
  EXPECT_EQ(update.granted(0).token(), granted.grant().token());
  EXPECT_EQ(update.granted(0).compute_node(), "cn-1");
  EXPECT_EQ(update.granted(0).pod_name(), "trainer-0");

  rpci::v1::ReleaseRequest rel;
  rel.set_node("cn-1");
  rel.set_device_id(claim.device_id());
  rel.set_grant_id(granted.grant().grant_id());
  ASSERT_TRUE(UnaryCall(*plugin, &NodeRegistry::Stub::Release, rel, kCallTimeout, "").ok());
  ASSERT_TRUE(grants->Read(&update));
  ASSERT_EQ(update.revoked_grant_ids_size(), 1);
  EXPECT_EQ(update.revoked_grant_ids(0), granted.grant().grant_id());
  grants_ctx.TryCancel();
  assign_ctx.TryCancel();
}

TEST_F(ServiceTest, PeerWithAnotherNodesIdentityIsRefused) {
  auto imposter = AgentRegistry::NewStub(ChannelAs("agent:dev-b"));
  const rpci::v1::RegisterAgentRequest dev_a = AgentWith("dev-a", "emu", 1);
  EXPECT_TRUE(absl::IsPermissionDenied(
      UnaryCall(*imposter, &AgentRegistry::Stub::RegisterAgent, dev_a, kCallTimeout, "").status()));
  EXPECT_TRUE(manager_->Devices().empty());

  // A plugin certificate cannot speak the agent API, even for its own node.
  auto plugin_as_agent = AgentRegistry::NewStub(ChannelAs("plugin:dev-a"));
  EXPECT_TRUE(absl::IsPermissionDenied(
      UnaryCall(*plugin_as_agent, &AgentRegistry::Stub::RegisterAgent, dev_a, kCallTimeout, "").status()));
}

// Each registry admits one role: every call of the node registry refuses an
// agent certificate and every call of the agent registry a plugin
// certificate, for the very node the certificate names.
TEST_F(ServiceTest, EachRegistryRefusesTheOtherRoleOnEveryCall) {
  auto agent_as_plugin = NodeRegistry::NewStub(ChannelAs("agent:cn-1"));
  auto plugin_as_agent = AgentRegistry::NewStub(ChannelAs("plugin:dev-a"));
  auto of = [](auto req, const std::string& node) {
    req.set_node(node);
    return req;
  };
  using NR = NodeRegistry::Stub;
  using AR = AgentRegistry::Stub;
  const std::vector<absl::Status> answers = {
      UnaryCall(*agent_as_plugin, &NR::RegisterNode, NodeWith("cn-1", "emu"), kCallTimeout, "").status(),
      UnaryCall(*agent_as_plugin, &NR::Heartbeat, of(rpci::v1::NodeHeartbeatRequest(), "cn-1"), kCallTimeout, "")
          .status(),
      UnaryCall(*agent_as_plugin, &NR::Claim, ClaimOf("cn-1", "dev-a-0000-3b-00-0", "p"), kCallTimeout, "").status(),
      UnaryCall(*agent_as_plugin, &NR::Release, of(rpci::v1::ReleaseRequest(), "cn-1"), kCallTimeout, "").status(),
      UnaryCall(*agent_as_plugin, &NR::ReportUsage, of(rpci::v1::ReportUsageRequest(), "cn-1"), kCallTimeout, "")
          .status(),
      UnaryCall(*agent_as_plugin, &NR::PrepareClaim, of(rpci::v1::NodeClaimRequest(), "cn-1"), kCallTimeout, "")
          .status(),
      UnaryCall(*agent_as_plugin, &NR::UnprepareClaim, of(rpci::v1::NodeClaimRequest(), "cn-1"), kCallTimeout,
                "")
          .status(),
      UnaryCall(*plugin_as_agent, &AR::Heartbeat, of(rpci::v1::AgentHeartbeatRequest(), "dev-a"), kCallTimeout, "")
          .status(),
  };
  for (size_t i = 0; i < answers.size(); ++i) {
    EXPECT_TRUE(absl::IsPermissionDenied(answers[i])) << "call " << i << ": " << answers[i];
  }
  grpc::ClientContext assignments_ctx, grants_ctx;
  auto assignments = agent_as_plugin->WatchAssignments(
      &assignments_ctx, WatchOf<rpci::v1::WatchAssignmentsRequest>("cn-1", &assignments_ctx));
  rpci::v1::AssignmentSet set;
  EXPECT_FALSE(assignments->Read(&set));
  EXPECT_EQ(assignments->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto grants = plugin_as_agent->WatchGrants(&grants_ctx, WatchOf<rpci::v1::WatchGrantsRequest>("dev-a", &grants_ctx));
  rpci::v1::GrantUpdate update;
  EXPECT_FALSE(grants->Read(&update));
  EXPECT_EQ(grants->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(manager_->Devices().empty());
}

TEST_F(ServiceTest, PluginCannotClaimADeviceAssignedToAnotherNode) {
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("dev-a", "emu", 1)).ok());
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-1", "emu")).ok());
  manager_->Reconcile();
  ASSERT_EQ(manager_->AssignmentsFor("cn-1").assignments_size(), 1);
  auto other = NodeRegistry::NewStub(ChannelAs("plugin:cn-2"));
  rpci::v1::ClaimRequest claim = ClaimOf("cn-2", manager_->AssignmentsFor("cn-1").assignments(0).device().id(), "p");
  EXPECT_TRUE(absl::IsPermissionDenied(UnaryCall(*other, &NodeRegistry::Stub::Claim, claim, kCallTimeout, "").status()));
  // Naming cn-1 in the request while holding cn-2's certificate fails too.
  claim.set_node("cn-1");
  EXPECT_TRUE(absl::IsPermissionDenied(UnaryCall(*other, &NodeRegistry::Stub::Claim, claim, kCallTimeout, "").status()));
  EXPECT_TRUE(manager_->Attachments().empty());
}

TEST_F(ServiceTest, ClientWithoutValidCertificateIsRefused) {
  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = ca_->ca_pem();
  auto anonymous = NodeRegistry::NewStub(ChannelWith(grpc::SslCredentials(no_cert)));
  const rpci::v1::RegisterNodeRequest cn_1 = NodeWith("cn-1", "emu");
  EXPECT_FALSE(UnaryCall(*anonymous, &NodeRegistry::Stub::RegisterNode, cn_1, kCallTimeout, "").ok());

  auto other_ca = CertAuthority::Create("intruder-ca");
  ASSERT_TRUE(other_ca.ok());
  auto intruder = other_ca->Issue("plugin:cn-1", {}, {});
  ASSERT_TRUE(intruder.ok());
  intruder->ca_pem = ca_->ca_pem();
  auto stub = NodeRegistry::NewStub(ChannelWith(MakeChannelCredentials(*intruder)));
  EXPECT_FALSE(UnaryCall(*stub, &NodeRegistry::Stub::RegisterNode, cn_1, kCallTimeout, "").ok());
  EXPECT_EQ(manager_->NodeHeartbeat("cn-1").code(), absl::StatusCode::kNotFound);
}

TEST_F(ServiceTest, FollowerAnswersUnavailableNamingTheLeader) {
  leader_ = false;
  auto plugin = NodeRegistry::NewStub(ChannelAs("plugin:cn-1"));
  absl::Status s = UnaryCall(*plugin, &NodeRegistry::Stub::RegisterNode, NodeWith("cn-1", "emu"), kCallTimeout, "")
                       .status();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find("controller-b"), std::string::npos);
}

TEST_F(ServiceTest, HeartbeatBeforeRegistrationAsksToRegister) {
  auto agent = AgentRegistry::NewStub(ChannelAs("agent:dev-a"));
  rpci::v1::AgentHeartbeatRequest hb;
  hb.set_node("dev-a");
  EXPECT_TRUE(absl::IsNotFound(UnaryCall(*agent, &AgentRegistry::Stub::Heartbeat, hb, kCallTimeout, "").status()));
}

}  // namespace
}  // namespace rpci::controller
