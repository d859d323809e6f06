#include "agent/app/agent_app.h"

#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "absl/time/clock.h"
#include "agent/app/real_device_backends.h"
#include "agent/backends/emu_backend.h"
#include "client/session_client.h"
#include "common/cert_authority.h"
#include "common/testing/exposition_format.h"
#include "common/tls.h"
#include "controller/controller_app.h"
#include "controller/testing/registrations.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "librpci/device.h"
#include "proto/rpci/v1/controller.grpc.pb.h"

namespace rpci::agent {
namespace {

using controller::testing::ClaimOf;
using controller::testing::MakeTempDir;
using controller::testing::WaitFor;

// The real controller (ControllerApp on a local store) and an AgentApp with
// two emulated devices, all on loopback; the test plays compute node cn-1.
class AgentAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kError);
    StartController(nullptr);
  }

  // A fresh controller; mTLS with `tls` (its certificate "controller"),
  // plaintext when null.
  void StartController(const TlsFiles* tls) {
    if (controller_) controller_->Stop();
    controller::ControllerOptions co;
    co.store = "local";
    co.state_dir = MakeTempDir("agent-app-ctl");
    co.tls.insecure = tls == nullptr;
    if (tls != nullptr) {
      co.tls.cert_file = tls->cert_file;
      co.tls.key_file = tls->key_file;
      co.tls.ca_file = tls->ca_file;
    }
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
    o.tls.insecure = true;
    o.session_listen = "127.0.0.1:0";
    o.http_listen = "127.0.0.1:0";
    o.state_dir = MakeTempDir("agent-app-state");
    o.fabric.provider = "tcp;ofi_rxm";
    o.fabric.node = "127.0.0.1";
    EmuDevicesConfig emu;
    emu.count = 2;
    emu.pool = "emu";
    o.emu = {emu};
    return o;
  }

  // The real emu backends, remembering each device made.
  DeviceBackends Backends() {
    DeviceBackends b = RealDeviceBackends();
    auto real = b.emu;
    b.emu = [this, real](const EmuDevicesConfig& config, int index) -> absl::StatusOr<std::unique_ptr<SessionDevice>> {
      absl::StatusOr<std::unique_ptr<SessionDevice>> dev = real(config, index);
      if (dev.ok()) made_.push_back(&static_cast<EmuBackend&>(**dev).device());
      return dev;
    };
    return b;
  }

  uint32_t Scratch(size_t device) { return *made_.at(device)->Read32(emu::kRegScratch); }

  // As compute node cn-1's plugin over `creds`: registers the node and claims
  // `device` once the controller has assigned it.
  rpci::v1::ClaimResponse Claim(std::shared_ptr<grpc::ChannelCredentials> creds, const std::string& device) {
    auto nodes = rpci::v1::NodeRegistry::NewStub(grpc::CreateChannel(controller_address_, creds));
    {
      grpc::ClientContext ctx;
      rpci::v1::RegisterResponse resp;
      grpc::Status s = nodes->RegisterNode(&ctx, controller::testing::NodeWith("cn-1", "emu"), &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    rpci::v1::ClaimResponse granted;
    EXPECT_TRUE(WaitFor([&] {
      grpc::ClientContext ctx;
      return nodes->Claim(&ctx, ClaimOf("cn-1", device, "p", "ml"), &granted).ok();
    }));
    return granted;
  }

  // Reserves the session of `granted` for cn-1 over `creds`, retrying while
  // the grant is on its way to the agent.
  absl::StatusOr<client::SessionTicket> Reserve(std::shared_ptr<grpc::ChannelCredentials> creds,
                                                const rpci::v1::ClaimResponse& granted) {
    absl::StatusOr<client::SessionTicket> ticket = absl::UnavailableError("not tried");
    WaitFor([&] {
      ticket = client::ControlClient({creds}).Reserve(granted.agent_session_endpoint(), {granted.grant().grant_id(), granted.grant().token(), "cn-1"});
      return ticket.ok();
    });
    return ticket;
  }

  // Starts the agent with `o`, waits until ready, claims emu device 0 and
  // reserves a session on it.
  void StartAndReserve(const AgentOptions& o, absl::StatusOr<client::SessionTicket>* ticket) {
    auto app = AgentApp::Create(o, Backends());
    ASSERT_TRUE(app.ok()) << app.status();
    agent_ = *std::move(app);
    ASSERT_TRUE(agent_->Start().ok());
    ASSERT_TRUE(WaitFor([&] { return agent_->Readiness().ok(); }));
    rpci::v1::ClaimResponse granted = Claim(grpc::InsecureChannelCredentials(), "dev-a-fffe-00-00-0");
    *ticket = Reserve(grpc::InsecureChannelCredentials(), granted);
    ASSERT_TRUE(ticket->ok()) << ticket->status();
  }

  // Stops the agent (unless stopped) and starts it again with `o` on the
  // session endpoint of `ticket`, as a restarted pod keeps its address.
  void RestartAgentAt(AgentOptions o, const client::SessionTicket& ticket) {
    if (agent_) {
      agent_->Stop();  // as on SIGTERM
      agent_.reset();
    }
    o.session_advertise = ticket.endpoint;
    o.session_listen = ticket.endpoint;
    auto again = AgentApp::Create(o, Backends());
    ASSERT_TRUE(again.ok()) << again.status();
    agent_ = *std::move(again);
    ASSERT_TRUE(agent_->Start().ok());
  }

  // Attaches to `ticket`'s session over loopback; the agent gives up a client
  // silent for `grace`.
  static absl::StatusOr<std::unique_ptr<client::SessionClient>> Attach(const client::SessionTicket& ticket,
                                                                       absl::Duration grace = absl::Seconds(5)) {
    client::ClientOptions copts;
    copts.fabric.node = "127.0.0.1";
    copts.grace = grace;
    return client::SessionClient::Attach(ticket, copts);
  }

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
  // The DMA space its backend serves (emu's default), for the DRA slices' capacity.
  EXPECT_EQ(agent_->devices()[0].dma_size(), uint64_t{1} << 20);
  EXPECT_FALSE(agent_->Readiness().ok());  // not serving, not registered

  ASSERT_TRUE(agent_->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return HttpStatus("/readyz") == 200; })) << HttpStatus("/readyz");
  EXPECT_EQ(HttpStatus("/healthz"), 200);

  // Compute node cn-1 sees both devices assigned, with our session endpoint.
  auto channel = grpc::CreateChannel(controller_address_, grpc::InsecureChannelCredentials());
  auto nodes = rpci::v1::NodeRegistry::NewStub(channel);
  {
    grpc::ClientContext ctx;
    rpci::v1::RegisterResponse resp;
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
  rpci::v1::ClaimResponse granted;
  {
    grpc::ClientContext ctx;
    grpc::Status s = nodes->Claim(&ctx, ClaimOf("cn-1", "dev-a-fffe-00-01-0", "trainer-0", "ml"), &granted);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(granted.agent_session_endpoint(), agent_->session_endpoint());
  absl::StatusOr<client::SessionTicket> ticket = Reserve(grpc::InsecureChannelCredentials(), granted);
  ASSERT_TRUE(ticket.ok()) << ticket.status();
  auto session = Attach(*ticket);
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
  absl::StatusOr<rpci::testing::Exposition> exposition = rpci::testing::CheckExpositionFormat(metrics->body);
  ASSERT_TRUE(exposition.ok()) << exposition.status() << "\n" << metrics->body;
  EXPECT_EQ(exposition->Value("rpci_agent_exported_devices", {{"pool", "emu"}, {"backend", "emu"}}).value_or(-1), 2)
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
  absl::StatusOr<client::SessionTicket> ticket;
  StartAndReserve(o, &ticket);
  if (HasFatalFailure()) return;

  RestartAgentAt(o, *ticket);
  if (HasFatalFailure()) return;
  EXPECT_EQ(agent_->session_server().live_sessions(), 1u);  // back from the checkpoint, dormant
  auto session = Attach(*ticket);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->Write(0, emu::kRegScratch, 4, 7).ok());
  ASSERT_TRUE((*session)->Sync(absl::Seconds(5)).ok());
  ASSERT_EQ(made_.size(), 4u);
  EXPECT_EQ(Scratch(2), 7u);  // device 0 of the restarted agent
}

// A session that had written to its device is not resumed by a restarted
// agent: the emu device starts fresh (a VFIO device is reset by the kernel),
// so the workload gets DATA_LOSS naming the reset instead of a silent resume
// against a device that forgot everything.
TEST_F(AgentAppTest, ASessionWithDeviceStateGetsDataLossAfterAnAgentRestart) {
  AgentOptions o = Options();
  absl::StatusOr<client::SessionTicket> ticket;
  StartAndReserve(o, &ticket);
  if (HasFatalFailure()) return;
  {
    auto session = Attach(*ticket, absl::Seconds(2));
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE((*session)->Write(0, emu::kRegScratch, 4, 7).ok());
    ASSERT_TRUE((*session)->Sync(absl::Seconds(5)).ok());
    agent_->Stop();
    agent_.reset();
  }
  RestartAgentAt(o, *ticket);
  if (HasFatalFailure()) return;
  auto session = Attach(*ticket, absl::Seconds(2));
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(session.status().code(), absl::StatusCode::kDataLoss) << session.status();
  EXPECT_NE(session.status().message().find("device was reset"), std::string::npos) << session.status();
}

// With TLS, the session server authenticates itself to everyone, lets only
// the compute node's plugin reserve sessions, and lets a workload that holds
// just the CA and its session key attach (librpci, as from the plugin's env).
TEST_F(AgentAppTest, WithTlsOnlyTheNodesPluginReservesAndAWorkloadAttachesWithTheCaAndKey) {
  const std::string dir = MakeTempDir("agent-app-tls");
  absl::StatusOr<CertAuthority> ca = CertAuthority::Create("agent-app-test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  std::map<std::string, TlsMaterial> certs;
  for (const char* name : {"controller", "agent:dev-a", "plugin:cn-1", "plugin:cn-2"}) {
    absl::StatusOr<TlsMaterial> cert = ca->Issue(name, {"localhost"}, {"127.0.0.1"});
    ASSERT_TRUE(cert.ok()) << cert.status();
    certs[name] = *cert;
  }
  absl::StatusOr<TlsFiles> controller_files = CertAuthority::WriteFiles(certs["controller"], dir, "controller");
  absl::StatusOr<TlsFiles> agent_files = CertAuthority::WriteFiles(certs["agent:dev-a"], dir, "agent");
  ASSERT_TRUE(controller_files.ok() && agent_files.ok());
  StartController(&*controller_files);
  AgentOptions o = Options();
  o.tls.insecure = false;
  o.tls.cert_file = agent_files->cert_file;
  o.tls.key_file = agent_files->key_file;
  o.tls.ca_file = agent_files->ca_file;
  auto app = AgentApp::Create(o, Backends());
  ASSERT_TRUE(app.ok()) << app.status();
  agent_ = *std::move(app);
  ASSERT_TRUE(agent_->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return agent_->Readiness().ok(); })) << agent_->Readiness().status();

  const auto plugin_cn1 = MakeChannelCredentials(certs["plugin:cn-1"]);
  rpci::v1::ClaimResponse granted = Claim(plugin_cn1, "dev-a-fffe-00-01-0");
  absl::StatusOr<client::SessionTicket> ticket = Reserve(plugin_cn1, granted);
  ASSERT_TRUE(ticket.ok()) << ticket.status();

  // Anyone else is refused before the grant is even looked at (the device is
  // taken now, which would be FAILED_PRECONDITION).
  auto reserve = [&](std::shared_ptr<grpc::ChannelCredentials> creds) {
    return client::ControlClient({creds}).Reserve(granted.agent_session_endpoint(), {granted.grant().grant_id(), granted.grant().token(), "cn-1"})
        .status();
  };
  absl::Status other_node = reserve(MakeChannelCredentials(certs["plugin:cn-2"]));
  EXPECT_EQ(other_node.code(), absl::StatusCode::kPermissionDenied) << other_node;
  EXPECT_NE(other_node.message().find("plugin:cn-2"), std::string::npos) << other_node;
  EXPECT_EQ(reserve(MakeChannelCredentials(certs["agent:dev-a"])).code(), absl::StatusCode::kPermissionDenied);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ca_only = MakeCaOnlyChannelCredentials(agent_files->ca_file);
  ASSERT_TRUE(ca_only.ok()) << ca_only.status();
  EXPECT_EQ(reserve(*ca_only).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(reserve(grpc::InsecureChannelCredentials()).code(), absl::StatusCode::kUnavailable);  // no TLS at all

  // The workload: the plugin's environment with the CA file, no certificate.
  const std::string key_file = dir + "/key";
  std::ofstream(key_file) << ticket->key.Hex() << "\n";
  std::map<std::string, std::string> env = {{"RPCI_DEVICE_COUNT", "1"},
                                            {"RPCI_0_SESSION_ENDPOINT", ticket->endpoint},
                                            {"RPCI_0_SESSION_ID", ticket->session_id.ToString()},
                                            {"RPCI_0_SESSION_KEY_FILE", key_file},
                                            {"RPCI_0_CA_FILE", agent_files->ca_file},
                                            {"RPCI_0_FABRIC_NODE", "127.0.0.1"}};
  absl::StatusOr<lib::DeviceConfig> config = lib::ConfigFromEnv(0, lib::MapEnv(env));
  ASSERT_TRUE(config.ok()) << config.status();

  lib::DeviceConfig wrong_key = *config;
  wrong_key.key = *session::SessionKey::Generate();
  EXPECT_EQ(lib::Device::Open(wrong_key).status().code(), absl::StatusCode::kUnauthenticated);
  lib::DeviceConfig plaintext = *config;
  plaintext.ca_file.clear();
  EXPECT_EQ(lib::Device::Open(plaintext).status().code(), absl::StatusCode::kUnavailable);

  absl::StatusOr<std::unique_ptr<lib::Device>> device = lib::Device::Open(*config);
  ASSERT_TRUE(device.ok()) << device.status();
  ASSERT_TRUE((*device)->Write32(0, emu::kRegScratch, 0xc0ffee).ok());
  EXPECT_EQ(*(*device)->Read32(0, emu::kRegScratch), 0xc0ffeeu);
  ASSERT_EQ(made_.size(), 2u);
  EXPECT_EQ(Scratch(1), 0xc0ffeeu);
  EXPECT_TRUE((*device)->Close().ok());
}

}  // namespace
}  // namespace rpci::agent
