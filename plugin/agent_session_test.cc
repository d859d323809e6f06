// The plugin with real sessions: the controller, the agent's session server
// with a test register-file device over tcp;ofi_rxm on loopback, the fake
// kubelet. The "workload" attaches with exactly what Allocate handed it.

#include <atomic>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "agent/session/session_server.h"
#include "agent/session/testing/loopback_server.h"
#include "agent/session/testing/test_device.h"
#include "client/session_client.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "plugin/plugin.h"
#include "plugin/testing/test_env.h"

namespace rpci::plugin {
namespace {

using rpci::testing::FakeKubelet;

constexpr char kResource[] = "rpci.io/emu";
constexpr char kDevice[] = "dev-a-0000-3b-00-0";

// The real opener, except that when told it loses the answer of its next
// reservation after the agent made it: what a reservation timing out on the
// plugin's side (DEADLINE_EXCEEDED) leaves behind.
class AnswerLosingOpener final : public SessionOpener {
 public:
  explicit AnswerLosingOpener(std::unique_ptr<SessionOpener> real) : real_(std::move(real)) {}
  absl::StatusOr<AttachedSession> Open(const rpci::v1::SessionGrant& grant, const std::string& endpoint) override {
    absl::StatusOr<AttachedSession> opened = real_->Open(grant, endpoint);
    if (opened.ok() && lose_next_answer.exchange(false)) {
      return absl::DeadlineExceededError("open session on agent " + endpoint + ": Deadline Exceeded");
    }
    return opened;
  }
  absl::Status Close(const AttachedSession& session) override { return real_->Close(session); }
  absl::Status Check(const AttachedSession& session) override { return real_->Check(session); }
  absl::Status ProbeAgent(const std::string& endpoint, absl::Duration timeout) override {
    return real_->ProbeAgent(endpoint, timeout);
  }
  std::atomic<bool> lose_next_answer{false};

 private:
  std::unique_ptr<SessionOpener> real_;
};

class AgentSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kWarn);
    dir_ = ::rpci::testing::MakeTempDir("rpci-plugin", ::rpci::testing::TempDirUse::kSockets);
    ASSERT_FALSE(dir_.empty());
    StartAgent();
    controller_ = std::make_unique<controller::testing::LoopbackController>(dir_ + "/store", 1);
    ASSERT_TRUE(controller_->status().ok()) << controller_->status();
    rpci::v1::RegisterAgentRequest agent = controller::testing::AgentWith("dev-a", "emu", 1);
    agent.set_session_endpoint(Endpoint());
    ASSERT_TRUE(controller_->manager().RegisterAgent(agent).ok());
    // The agent's grant watch, reduced to copying the controller's grants
    // (and revoking those it no longer lists).
    forwarder_ = std::thread([this] {
      std::set<std::string> known;
      while (!stop_) {
        std::set<std::string> live;
        for (const rpci::v1::SessionGrant& g : controller_->manager().GrantsFor("dev-a")) {
          grants_.Upsert({g.grant_id(), g.device_id(), g.compute_node(), g.token(), absl::InfiniteFuture()});
          live.insert(g.grant_id());
        }
        for (const std::string& id : known) {
          if (live.count(id) == 0) grants_.Revoke(id);
        }
        known = std::move(live);
        absl::SleepFor(absl::Milliseconds(10));
      }
    });
    // The runtime has CDI enabled and reads the specs the plugin writes.
    kubelet_ = std::make_unique<FakeKubelet>(dir_ + "/dp", dir_ + "/pr.sock", dir_ + "/cdi");
    ASSERT_TRUE(kubelet_->Start().ok());
    client_ = std::make_unique<GrpcControllerClient>(controller_->Channel());
    opener_ = std::make_unique<AnswerLosingOpener>(std::make_unique<AgentSessionOpener>(nullptr, "cn-1"));
    PluginOptions o = testing::TestPluginOptions(dir_);
    o.device_edits = device_edits_;
    o.health_interval = absl::Milliseconds(100);
    plugin_ = std::make_unique<Plugin>(o, client_.get(), opener_.get());
    ASSERT_TRUE(plugin_->Start().ok());
    ASSERT_TRUE(testing::AssignAndAdvertise(*controller_, *client_, *plugin_, *kubelet_, 1));
  }

  void TearDown() override {
    stop_ = true;
    if (forwarder_.joinable()) forwarder_.join();
    client_->Stop();
    plugin_->Stop();
    kubelet_->Stop();
    StopAgent();
  }

  void StartAgent() {
    agent::SessionServerOptions opts;
    opts.state_dir = dir_ + "/agent";
    mkdir(opts.state_dir.c_str(), 0700);
    opts.metrics = &metrics_;
    auto agent = agent::testing::LoopbackSessionServer::Start(opts, &grants_, {{kDevice, &device_}}, port_);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
    port_ = agent_->port();
  }
  void StopAgent() { agent_.reset(); }
  std::string Endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

  // Attaches as a workload in `container` would: with its env and, through
  // its mount of the session dir, the key file; then writes a register.
  std::unique_ptr<client::SessionClient> AttachAsTheWorkload(const v1beta1::ContainerAllocateResponse& container) {
    const auto& env = container.envs();
    EXPECT_EQ(container.mounts_size(), 1);
    if (container.mounts_size() != 1) return nullptr;
    // The container sees the mount at container_path; on the host it is host_path.
    const v1beta1::Mount& m = container.mounts(0);
    std::string key_file = env.at("RPCI_SESSION_KEY_FILE");
    EXPECT_EQ(key_file.rfind(m.container_path(), 0), 0u);
    key_file = m.host_path() + key_file.substr(m.container_path().size());
    std::ifstream in(key_file);
    std::stringstream ss;
    ss << in.rdbuf();
    auto key = session::SessionKey::FromHex(std::string(absl::StripAsciiWhitespace(ss.str())));
    EXPECT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(env.at("RPCI_SESSION_ENDPOINT"), Endpoint());
    EXPECT_EQ(env.at("RPCI_0_BARS"), "0:4096,2:256");
    if (!key.ok()) return nullptr;
    client::ClientOptions opts;
    opts.grace = absl::Seconds(5);
    client::SessionTicket ticket{env.at("RPCI_SESSION_ENDPOINT"),
                                 *session::SessionId::Parse(env.at("RPCI_SESSION_ID")), *key, "", {}, 0};
    auto c = client::SessionClient::Attach(ticket, opts);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    EXPECT_TRUE((*c)->Write(0, 0x40, 4, 0x1234).ok());
    EXPECT_TRUE((*c)->Sync(absl::Seconds(5)).ok());
    EXPECT_EQ(device_.reg(0x40), 0x1234u);
    return *std::move(c);
  }

  std::string dir_;
  int port_ = 0;
  MetricsRegistry metrics_;
  agent::GrantTable grants_;
  agent::testing::TestDevice device_;
  std::unique_ptr<agent::testing::LoopbackSessionServer> agent_;
  std::unique_ptr<controller::testing::LoopbackController> controller_;
  std::atomic<bool> stop_{false};
  std::thread forwarder_;
  std::unique_ptr<FakeKubelet> kubelet_;
  std::unique_ptr<GrpcControllerClient> client_;
  std::unique_ptr<AnswerLosingOpener> opener_;
  std::unique_ptr<Plugin> plugin_;
  DeviceEditsVia device_edits_ = DeviceEditsVia::kAllocateResponse;
};

// The plugin run with --cdi=on.
class AgentSessionWithCdiTest : public AgentSessionTest {
 protected:
  AgentSessionWithCdiTest() { device_edits_ = DeviceEditsVia::kCdi; }
};

TEST_F(AgentSessionTest, WorkloadAttachesWithWhatAllocateHandedIt) {
  auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  std::unique_ptr<client::SessionClient> c = AttachAsTheWorkload(admitted->response);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(kubelet_->PreStartContainer(kResource, admitted->device_ids).ok());

  // Kubelet restart keeps the session working.
  ASSERT_TRUE(kubelet_->Restart().ok());
  ASSERT_TRUE(kubelet_->WaitForRegistration(kResource, 1, absl::Seconds(1)));
  ASSERT_TRUE(c->Write(0, 0x44, 4, 0x5678).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  EXPECT_EQ(device_.reg(0x44), 0x5678u);
  c->Close().IgnoreError();
}

// With --cdi=on the response names the CDI device and carries no mount; the
// container the runtime builds from the spec attaches the same way.
TEST_F(AgentSessionWithCdiTest, WorkloadAttachesWithWhatTheCdiSpecGaveItsContainer) {
  auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  EXPECT_EQ(admitted->response.mounts_size(), 0);
  ASSERT_EQ(admitted->response.cdi_devices_size(), 1);
  std::unique_ptr<client::SessionClient> c = AttachAsTheWorkload(admitted->container);
  ASSERT_NE(c, nullptr);
  c->Close().IgnoreError();
}

TEST_F(AgentSessionTest, AgentLossTurnsTheDeviceUnhealthyAndItsReturnHealthy) {
  auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  StopAgent();
  EXPECT_TRUE(kubelet_->WaitForDevices(kResource, testing::AllHealth(1, "Unhealthy"), absl::Seconds(3)));
  StartAgent();  // same port, same state dir: the session comes back dormant
  EXPECT_TRUE(kubelet_->WaitForDevices(kResource, testing::AllHealth(1, "Healthy"), absl::Seconds(5)));
  EXPECT_TRUE(kubelet_->PreStartContainer(kResource, admitted->device_ids).ok());
}

// The plugin's reservation times out after the agent opened the session; the
// plugin rolls the Allocate back (releasing the grant) and the kubelet
// retries. The retry gets the device (the agent ends the lost, never-attached
// reservation whose grant is gone), and one session holds it.
TEST_F(AgentSessionTest, AllocateRetriedAfterTheReservationAnswerWasLostGetsTheDevice) {
  opener_->lose_next_answer = true;
  auto lost = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(agent_->server().live_sessions(), 1u);  // the agent did open it
  auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  std::unique_ptr<client::SessionClient> c = AttachAsTheWorkload(admitted->response);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(agent_->server().live_sessions(), 1u);
  c->Close().IgnoreError();
}

}  // namespace
}  // namespace rpci::plugin
