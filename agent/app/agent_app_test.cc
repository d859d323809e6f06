#include "agent/app/agent_app.h"

#include <memory>
#include <set>

#include "absl/time/clock.h"
#include "agent/app/real_device_backends.h"
#include "agent/backends/emu_backend.h"
#include "agent/backends/session_device_adapter.h"
#include "client/session_client.h"
#include "controller/controller_app.h"
#include "controller/testing_util.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "proto/rpci/v1/controller.grpc.pb.h"

namespace rpci::agent {
namespace {

using controller::testing::MakeTempDir;

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(10)) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

// The real controller (ControllerApp on a local store) and an AgentApp with
// two emulated devices, all on loopback; the test plays compute node cn-1.
class AgentAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kError);
    controller::ControllerOptions co;
    co.store = "local";
    co.state_dir = MakeTempDir("agent-app-ctl");
    co.insecure = true;
    co.listen = "127.0.0.1:0";
    co.http_listen = "127.0.0.1:0";
    co.reconcile_interval = absl::Milliseconds(50);
    co.default_spares = 2;
    auto ctl = controller::ControllerApp::Create(co);
    ASSERT_TRUE(ctl.ok()) << ctl.status();
    controller_ = *std::move(ctl);
    ASSERT_TRUE(controller_->Start().ok());
    controller_address_ = "127.0.0.1:" + std::to_string(controller_->grpc_port());
  }
  void TearDown() override {
    if (agent_) agent_->Stop();
    if (controller_) controller_->Stop();
  }

  AgentOptions Options() {
    AgentOptions o;
    o.node = "dev-a";
    o.controller = controller_address_;
    o.insecure = true;
    o.session_listen = "127.0.0.1:0";
    o.http_listen = "127.0.0.1:0";
    o.state_dir = MakeTempDir("agent-app-state");
    o.fabric_provider = "tcp;ofi_rxm";
    o.fabric_address = "127.0.0.1";
    EmuDevicesConfig emu;
    emu.count = 2;
    emu.pool = "emu";
    o.emu = {emu};
    return o;
  }

  // The real emu backends, remembering each device made.
  DeviceBackends Backends() {
    DeviceBackends b = RealDeviceBackends(false);
    auto real = b.emu;
    b.emu = [this, real](const EmuDevicesConfig& config, int index) -> absl::StatusOr<std::unique_ptr<SessionDevice>> {
      absl::StatusOr<std::unique_ptr<SessionDevice>> dev = real(config, index);
      if (dev.ok()) made_.push_back(&static_cast<EmuBackend&>(static_cast<SessionDeviceAdapter&>(**dev).backend()).device());
      return dev;
    };
    return b;
  }

  uint32_t Scratch(size_t device) { return *made_.at(device)->Read32(emu::kRegScratch); }

  int HttpStatus(const std::string& path) {
    httplib::Client http("127.0.0.1", agent_->http_port());
    auto res = http.Get(path.c_str());
    return res ? res->status : -1;
  }

  std::unique_ptr<controller::ControllerApp> controller_;
  std::string controller_address_;
  std::unique_ptr<AgentApp> agent_;
  std::vector<emu::EmuDevice*> made_;
};

TEST_F(AgentAppTest, ExportsEmuDevicesGrantsSessionsAndBecomesReady) {
  auto app = AgentApp::Create(Options(), Backends());
  ASSERT_TRUE(app.ok()) << app.status();
  agent_ = *std::move(app);
  ASSERT_EQ(agent_->devices().size(), 2u);
  EXPECT_EQ(agent_->devices()[0].id(), "dev-a-fffe-00-00-0");
  EXPECT_EQ(agent_->devices()[1].function().bdf(), "fffe:00:01.0");
  EXPECT_EQ(agent_->devices()[0].function().vendor_id(), kEmuVendorId);
  EXPECT_FALSE(agent_->Readiness().ok());  // not serving, not registered

  ASSERT_TRUE(agent_->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return HttpStatus("/readyz") == 200; })) << HttpStatus("/readyz");
  EXPECT_EQ(HttpStatus("/healthz"), 200);

  // Compute node cn-1 sees both devices assigned, with our session endpoint.
  auto channel = grpc::CreateChannel(controller_address_, grpc::InsecureChannelCredentials());
  auto nodes = rpci::v1::NodeRegistry::NewStub(channel);
  {
    grpc::ClientContext ctx;
    rpci::v1::RegisterNodeResponse resp;
    ASSERT_TRUE(nodes->RegisterNode(&ctx, controller::testing::NodeWith("cn-1", "emu"), &resp).ok());
  }
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  rpci::v1::WatchAssignmentsRequest watch;
  watch.set_node("cn-1");
  auto stream = nodes->WatchAssignments(&watch_ctx, watch);
  std::set<std::string> assigned;
  rpci::v1::AssignmentSet set;
  while (assigned.size() < 2 && stream->Read(&set)) {
    assigned.clear();
    for (const auto& a : set.assignments()) {
      EXPECT_EQ(a.agent_session_endpoint(), agent_->session_endpoint());
      EXPECT_EQ(a.agent_fabric_provider(), "tcp;ofi_rxm");
      assigned.insert(a.device().id());
    }
  }
  watch_ctx.TryCancel();
  EXPECT_EQ(assigned, (std::set<std::string>{"dev-a-fffe-00-00-0", "dev-a-fffe-00-01-0"}));

  // A claim's grant reaches the agent; the session it opens applies writes.
  rpci::v1::ClaimRequest claim;
  claim.set_node("cn-1");
  claim.set_device_id("dev-a-fffe-00-01-0");
  claim.set_pod_namespace("ml");
  claim.set_pod_name("trainer-0");
  claim.set_container_name("main");
  rpci::v1::ClaimResponse granted;
  {
    grpc::ClientContext ctx;
    grpc::Status s = nodes->Claim(&ctx, claim, &granted);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(granted.agent_session_endpoint(), agent_->session_endpoint());
  absl::StatusOr<client::SessionTicket> ticket = absl::UnavailableError("not tried");
  ASSERT_TRUE(WaitFor([&] {
    ticket = client::ReserveSession(granted.agent_session_endpoint(), grpc::InsecureChannelCredentials(),
                                    granted.grant().grant_id(), granted.grant().token(), "cn-1");
    return ticket.ok();
  })) << ticket.status();
  client::ClientOptions copts;
  copts.link.node = "127.0.0.1";
  copts.grace = absl::Seconds(5);
  auto session = client::SessionClient::Attach(*ticket, copts);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->Write(0, emu::kRegScratch, 4, 0xfeed).ok());
  ASSERT_TRUE((*session)->Sync(absl::Seconds(5)).ok());
  ASSERT_EQ(made_.size(), 2u);
  EXPECT_EQ(Scratch(1), 0xfeedu);
  EXPECT_EQ(Scratch(0), 0u);
  // The BAR mirror shows the emu's identity register.
  ASSERT_TRUE((*session)->Refresh(absl::Seconds(5)).ok());
  EXPECT_EQ(*(*session)->Read(0, emu::kRegDeviceId, 4), emu::kDeviceIdValue);

  httplib::Client http("127.0.0.1", agent_->http_port());
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("rpci_agent_exported_devices{pool=\"emu\",backend=\"emu\"} 2"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("rpci_session"), std::string::npos);
  EXPECT_EQ(agent_->session_server().live_sessions(), 1u);
  (*session).reset();
}

TEST_F(AgentAppTest, ReadyzIsUnavailableUntilTheControllerAnswers) {
  AgentOptions o = Options();
  controller_->Stop();
  o.controller = "127.0.0.1:1";  // nothing listens there
  auto app = AgentApp::Create(o, Backends());
  ASSERT_TRUE(app.ok()) << app.status();
  agent_ = *std::move(app);
  ASSERT_TRUE(agent_->Start().ok());
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(HttpStatus("/readyz"), 503);
  EXPECT_EQ(HttpStatus("/healthz"), 200);
  absl::StatusOr<std::string> ready = agent_->Readiness();
  ASSERT_FALSE(ready.ok());
  EXPECT_NE(ready.status().message().find("not registered with controller 127.0.0.1:1"), std::string::npos);
}

TEST_F(AgentAppTest, SessionsSurviveAnAgentRestartThroughTheCheckpoint) {
  AgentOptions o = Options();
  auto app = AgentApp::Create(o, Backends());
  ASSERT_TRUE(app.ok()) << app.status();
  agent_ = *std::move(app);
  ASSERT_TRUE(agent_->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return agent_->Readiness().ok(); }));
  auto nodes = rpci::v1::NodeRegistry::NewStub(
      grpc::CreateChannel(controller_address_, grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    rpci::v1::RegisterNodeResponse resp;
    ASSERT_TRUE(nodes->RegisterNode(&ctx, controller::testing::NodeWith("cn-1", "emu"), &resp).ok());
  }
  rpci::v1::ClaimRequest claim;
  claim.set_node("cn-1");
  claim.set_device_id("dev-a-fffe-00-00-0");
  claim.set_pod_namespace("ml");
  claim.set_pod_name("p");
  rpci::v1::ClaimResponse granted;
  ASSERT_TRUE(WaitFor([&] {
    grpc::ClientContext ctx;
    return nodes->Claim(&ctx, claim, &granted).ok();
  }));
  absl::StatusOr<client::SessionTicket> ticket = absl::UnavailableError("not tried");
  ASSERT_TRUE(WaitFor([&] {
    ticket = client::ReserveSession(granted.agent_session_endpoint(), grpc::InsecureChannelCredentials(),
                                    granted.grant().grant_id(), granted.grant().token(), "cn-1");
    return ticket.ok();
  })) << ticket.status();

  agent_->Stop();  // as on SIGTERM
  agent_.reset();
  o.session_advertise = ticket->endpoint;  // the same endpoint, as a restarted pod keeps its address
  o.session_listen = ticket->endpoint;
  auto again = AgentApp::Create(o, Backends());
  ASSERT_TRUE(again.ok()) << again.status();
  agent_ = *std::move(again);
  ASSERT_TRUE(agent_->Start().ok());
  EXPECT_EQ(agent_->session_server().live_sessions(), 1u);  // back from the checkpoint, dormant
  client::ClientOptions copts;
  copts.link.node = "127.0.0.1";
  copts.grace = absl::Seconds(5);
  auto session = client::SessionClient::Attach(*ticket, copts);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->Write(0, emu::kRegScratch, 4, 7).ok());
  ASSERT_TRUE((*session)->Sync(absl::Seconds(5)).ok());
  ASSERT_EQ(made_.size(), 4u);
  EXPECT_EQ(Scratch(2), 7u);  // device 0 of the restarted agent
}

}  // namespace
}  // namespace rpci::agent
