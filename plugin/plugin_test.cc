#include "plugin/plugin.h"

#include <dirent.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "plugin/testing/test_env.h"

namespace rpci::plugin {
namespace {

using rpci::testing::AdvertisedDevice;
using rpci::testing::FakeKubelet;
using testing::AllHealth;
using testing::TestAgents;
using controller::testing::LoopbackController;

constexpr char kResource[] = "rpci.io/emu";
constexpr char kAgent[] = "dev-a:7443";

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
    }
    closedir(d);
  }
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The plugin against the real controller (3 emu devices on dev-a, all
// assigned to cn-1 as spares), the fake kubelet, and test agents.
class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kWarn);
    dir_ = ::rpci::testing::MakeTempDir("rpci-plugin", ::rpci::testing::TempDirUse::kSockets);
    ASSERT_FALSE(dir_.empty());
    controller_ = std::make_unique<LoopbackController>(dir_ + "/store", 3);
    ASSERT_TRUE(controller_->status().ok()) << controller_->status();
    ASSERT_TRUE(controller_->manager().RegisterAgent(controller::testing::AgentWith("dev-a", "emu", 3)).ok());
    // The runtime has CDI enabled and reads the specs the plugin writes.
    kubelet_ = std::make_unique<FakeKubelet>(dir_ + "/dp", dir_ + "/pr.sock", dir_ + "/cdi");
    ASSERT_TRUE(kubelet_->Start().ok());
    client_ = std::make_unique<GrpcControllerClient>(controller_->Channel());
    options_ = testing::TestPluginOptions(dir_);
    options_.device_edits = device_edits_;
    options_.health_interval = absl::Milliseconds(50);
    options_.release_grace = absl::ZeroDuration();
    options_.session_ca_pem = session_ca_pem_;
    plugin_ = std::make_unique<Plugin>(options_, client_.get(), &agents_);
    ASSERT_TRUE(plugin_->Start().ok());
    ASSERT_TRUE(testing::AssignAndAdvertise(*controller_, *client_, *plugin_, *kubelet_, 3));
    for (const AdvertisedDevice& d : kubelet_->Devices(kResource)) ids_.push_back(d.id);
  }

  void TearDown() override {
    client_->Stop();
    plugin_->Stop();
    kubelet_->Stop();
  }

  // Whether the kubelet sees all three devices with `health` within `timeout`.
  bool AllDevicesBecome(const std::string& health, absl::Duration timeout = absl::Seconds(2)) {
    return kubelet_->WaitForDevices(kResource, AllHealth(3, health), timeout);
  }
  // ml/trainer-0 admitted with one device: that device's id.
  absl::StatusOr<std::string> AdmitOneDevicePod() {
    auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
    if (!admitted.ok()) return admitted.status();
    return admitted->device_ids[0];
  }

  std::string dir_;
  TestAgents agents_;
  std::unique_ptr<LoopbackController> controller_;
  std::unique_ptr<FakeKubelet> kubelet_;
  std::unique_ptr<GrpcControllerClient> client_;
  PluginOptions options_;
  std::string session_ca_pem_;  // empty: the agents speak plaintext
  DeviceEditsVia device_edits_ = DeviceEditsVia::kAllocateResponse;
  std::unique_ptr<Plugin> plugin_;
  std::vector<std::string> ids_;
};

// The plugin run with --cdi=on: devices' edits travel in CDI specs.
class PluginWithCdiTest : public PluginTest {
 protected:
  PluginWithCdiTest() { device_edits_ = DeviceEditsVia::kCdi; }
};

// Agents serving SessionControl over TLS: workloads get the CA to verify them.
class PluginWithTlsAgentsTest : public PluginTest {
 protected:
  PluginWithTlsAgentsTest() {
    session_ca_pem_ = "-----BEGIN CERTIFICATE-----\nthe agents' CA\n-----END CERTIFICATE-----\n";
  }
};

TEST_F(PluginTest, RegistersAfterServingWithItsOptions) {
  // The fake kubelet dials the plugin and calls GetDevicePluginOptions before
  // it answers Register, so a recorded registration proves serving came first.
  std::vector<rpci::testing::Registration> regs = kubelet_->registrations();
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].resource_name, kResource);
  EXPECT_EQ(regs[0].endpoint, "rpci-emu.sock");
  EXPECT_TRUE(regs[0].options.pre_start_required());
  EXPECT_TRUE(regs[0].options.get_preferred_allocation_available());
}

TEST_F(PluginTest, RegistersWhenTheKubeletStartsAfterThePlugin) {
  const std::string dir = ::rpci::testing::MakeTempDir("rpci-plugin", ::rpci::testing::TempDirUse::kSockets);
  PluginOptions options = options_;
  options.plugin_dir = dir + "/dp";
  Plugin late(options, client_.get(), &agents_);
  ASSERT_TRUE(late.Start().ok());
  EXPECT_EQ(late.registrations(), 0);
  FakeKubelet kubelet(dir + "/dp", dir + "/pr.sock");
  ASSERT_TRUE(kubelet.Start().ok());
  EXPECT_TRUE(kubelet.WaitForRegistration(kResource, 1, absl::Seconds(1)));
  late.Stop();
}

TEST_F(PluginTest, ListAndWatchSendsAnAssignmentChangeWithin100ms) {
  rpci::v1::AssignmentSet set = controller_->manager().AssignmentsFor("cn-1");
  ASSERT_EQ(set.assignments_size(), 3);
  rpci::v1::Assignment extra = set.assignments(0);
  extra.mutable_device()->set_id("dev-b-0000-3b-00-0");
  *set.add_assignments() = extra;
  const absl::Time start = absl::Now();
  plugin_->SetAssignments(set);
  ASSERT_TRUE(kubelet_->WaitForDevices(kResource, AllHealth(4, "Healthy"), absl::Seconds(1)));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));
}

TEST_F(PluginTest, AssignmentFromTheControllerReachesTheKubelet) {
  ASSERT_TRUE(controller_->manager().RegisterAgent(controller::testing::AgentWith("dev-b", "emu", 1)).ok());
  std::vector<controller::PoolSpec> pools(1);
  pools[0].name = "emu";
  pools[0].spares_per_node = 4;
  controller_->manager().SetPools(pools);
  controller_->manager().Reconcile();
  EXPECT_TRUE(kubelet_->WaitForDevices(kResource, AllHealth(4, "Healthy"), absl::Seconds(2)));
}

TEST_F(PluginTest, KubeletRestartReRegistersWithinOneSecondKeepingSessions) {
  auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  const int before = plugin_->registrations();
  const absl::Time start = absl::Now();
  ASSERT_TRUE(kubelet_->Restart().ok());
  ASSERT_TRUE(kubelet_->WaitForRegistration(kResource, 1, absl::Seconds(1)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  // The kubelet records the registration just before the plugin hears back.
  for (int i = 0; i < 100 && plugin_->registrations() == before; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(plugin_->registrations(), before + 1);
  EXPECT_EQ(agents_.open_sessions(), 1u);
  EXPECT_EQ(plugin_->SessionDevices(), admitted->device_ids);
  EXPECT_TRUE(AllDevicesBecome("Healthy"));
  EXPECT_TRUE(kubelet_->PreStartContainer(kResource, admitted->device_ids).ok());
}

// What a container holding devices `ids` (plaintext agents) runs with, as the
// runtime builds it, whichever way the plugin sent the devices' edits.
void ExpectContainerOfTwoDevices(const v1beta1::ContainerAllocateResponse& c, const std::vector<std::string>& ids,
                                 const std::string& state_dir) {
  const auto& env = c.envs();
  EXPECT_EQ(env.at("RPCI_DEVICE_IDS"), ids[0] + "," + ids[1]);
  EXPECT_EQ(env.at("RPCI_DEVICE_COUNT"), "2");
  EXPECT_EQ(env.at("RPCI_0_DEVICE_ID"), ids[0]);
  EXPECT_EQ(env.at("RPCI_1_DEVICE_ID"), ids[1]);
  EXPECT_EQ(env.at("RPCI_0_SESSION_ENDPOINT"), kAgent);
  EXPECT_EQ(env.at("RPCI_0_SESSION_ID").size(), 16u);
  EXPECT_EQ(env.at("RPCI_SESSION_ID"), env.at("RPCI_0_SESSION_ID"));
  EXPECT_NE(env.at("RPCI_0_SESSION_ID"), env.at("RPCI_1_SESSION_ID"));
  EXPECT_EQ(env.at("RPCI_0_SESSION_KEY_FILE"), "/var/run/rpci/" + ids[0] + "/key");
  EXPECT_EQ(env.at("RPCI_0_BARS"), "0:4096,2:65536");
  EXPECT_EQ(env.at("RPCI_0_DMA_SIZE"), "1048576");
  EXPECT_EQ(env.at("RPCI_0_FABRIC_PROVIDER"), "tcp;ofi_rxm");
  EXPECT_EQ(env.count("RPCI_0_CA_FILE"), 0u);  // plaintext agents: no CA
  EXPECT_EQ(env.count("RPCI_CA_FILE"), 0u);
  ASSERT_EQ(c.mounts_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(c.mounts(i).host_path(), state_dir + "/" + ids[i]);
    EXPECT_EQ(c.mounts(i).container_path(), "/var/run/rpci/" + ids[i]);
    EXPECT_TRUE(c.mounts(i).read_only());
  }
}

TEST_F(PluginTest, AllocateAnswersEnvAndMountsInTheResponseAndWritesNoCdiSpec) {
  auto admitted = kubelet_->AdmitPodWithDevices("ml", "trainer-0", "main", kResource, {ids_[0], ids_[1]});
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  const v1beta1::ContainerAllocateResponse& r = admitted->response;
  ExpectContainerOfTwoDevices(r, {ids_[0], ids_[1]}, dir_ + "/state");
  ExpectContainerOfTwoDevices(admitted->container, {ids_[0], ids_[1]}, dir_ + "/state");
  EXPECT_EQ(r.cdi_devices_size(), 0);
  EXPECT_TRUE(Entries(dir_ + "/cdi").empty());
  EXPECT_EQ(r.annotations().at("rpci.io/devices"), ids_[0] + "," + ids_[1]);
  EXPECT_EQ(Entries(dir_ + "/state/" + ids_[0]).size(), 2u) << "key and session.json only";

  // The key file holds the session key in hex, readable by its owner only.
  const std::string key_file = dir_ + "/state/" + ids_[0] + "/key";
  struct stat st;
  ASSERT_EQ(stat(key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ReadFile(key_file), absl::BytesToHexString(std::string(32, static_cast<char>(0xa1))) + "\n");

  // The controller holds both attachments for this node.
  std::vector<controller::Attachment> attachments = controller_->manager().Attachments();
  ASSERT_EQ(attachments.size(), 2u);
  EXPECT_EQ(attachments[0].node, "cn-1");
}

TEST_F(PluginWithCdiTest, AllocateNamesCdiDevicesWhoseSpecsGiveTheContainerTheSameEnvAndMounts) {
  auto admitted = kubelet_->AdmitPodWithDevices("ml", "trainer-0", "main", kResource, {ids_[0], ids_[1]});
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  // The response names the devices and carries only the container-wide env.
  const v1beta1::ContainerAllocateResponse& r = admitted->response;
  ASSERT_EQ(r.cdi_devices_size(), 2);
  EXPECT_EQ(r.cdi_devices(0).name(), "rpci.io/emu=" + ids_[0]);
  EXPECT_EQ(r.cdi_devices(1).name(), "rpci.io/emu=" + ids_[1]);
  EXPECT_EQ(r.mounts_size(), 0);
  EXPECT_EQ(r.envs().count("RPCI_0_DEVICE_ID"), 0u);
  EXPECT_EQ(r.envs().at("RPCI_DEVICE_COUNT"), "2");
  // The runtime, applying the specs, builds the same container as without CDI.
  ExpectContainerOfTwoDevices(admitted->container, {ids_[0], ids_[1]}, dir_ + "/state");

  // One spec per device declares its env and its mount.
  const std::string spec_path = dir_ + "/cdi/rpci.io-emu-" + ids_[1] + ".json";
  nlohmann::json spec = nlohmann::json::parse(ReadFile(spec_path), nullptr, false);
  ASSERT_FALSE(spec.is_discarded()) << spec_path;
  EXPECT_EQ(spec["cdiVersion"], "0.6.0");
  EXPECT_EQ(spec["kind"], "rpci.io/emu");
  ASSERT_EQ(spec["devices"].size(), 1u);
  EXPECT_EQ(spec["devices"][0]["name"], ids_[1]);
  const nlohmann::json& edits = spec["devices"][0]["containerEdits"];
  EXPECT_EQ(edits["mounts"][0]["options"], nlohmann::json({"ro", "bind"}));

  // Releasing removes the specs with the session dirs.
  kubelet_->RemovePod("ml", "trainer-0");
  ASSERT_TRUE(plugin_->SyncUsage().ok());
  EXPECT_TRUE(Entries(dir_ + "/cdi").empty());
  EXPECT_TRUE(Entries(dir_ + "/state").empty());
}

TEST(PluginOptionsTest, CdiIsOnOrOffAndOffMeansTheAllocateResponse) {
  PluginOptions o;
  EXPECT_EQ(o.device_edits, DeviceEditsVia::kAllocateResponse);
  ASSERT_TRUE(ParseCdiMode("on", &o).ok());
  EXPECT_EQ(o.device_edits, DeviceEditsVia::kCdi);
  ASSERT_TRUE(ParseCdiMode("off", &o).ok());
  EXPECT_EQ(o.device_edits, DeviceEditsVia::kAllocateResponse);
  absl::Status bad = ParseCdiMode("auto", &o);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.message(), "\"auto\"")) << bad;
}

TEST_F(PluginWithCdiTest, ARestartedContainerGetsItsDevicesFromTheSpecsAgain) {
  auto admitted = kubelet_->AdmitPodWithDevices("ml", "trainer-0", "main", kResource, {ids_[0]});
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  auto again = kubelet_->RestartContainer("ml", "trainer-0", "main");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->container.envs().at("RPCI_0_SESSION_ID"), admitted->container.envs().at("RPCI_0_SESSION_ID"));
  EXPECT_EQ(again->container.mounts_size(), 1);
}

TEST_F(PluginWithTlsAgentsTest, AllocateHandsTheContainerTheAgentsCaInTheSessionDir) {
  auto admitted = kubelet_->AdmitPodWithDevices("ml", "trainer-0", "main", kResource, {ids_[0], ids_[1]});
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  const auto& env = admitted->container.envs();
  EXPECT_EQ(env.at("RPCI_0_CA_FILE"), "/var/run/rpci/" + ids_[0] + "/ca.crt");
  EXPECT_EQ(env.at("RPCI_1_CA_FILE"), "/var/run/rpci/" + ids_[1] + "/ca.crt");
  EXPECT_EQ(env.at("RPCI_CA_FILE"), env.at("RPCI_0_CA_FILE"));
  for (const std::string& id : {ids_[0], ids_[1]}) {
    const std::string ca_file = dir_ + "/state/" + id + "/ca.crt";
    EXPECT_EQ(ReadFile(ca_file), session_ca_pem_);
    struct stat st;
    ASSERT_EQ(stat(ca_file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644u);
    nlohmann::json doc = nlohmann::json::parse(ReadFile(dir_ + "/state/" + id + "/session.json"), nullptr, false);
    ASSERT_FALSE(doc.is_discarded());
    EXPECT_EQ(doc["ca_file"], "/var/run/rpci/" + id + "/ca.crt");
  }
  // Releasing removes the CA with the rest of the session dir.
  kubelet_->RemovePod("ml", "trainer-0");
  ASSERT_TRUE(plugin_->SyncUsage().ok());
  EXPECT_TRUE(Entries(dir_ + "/state").empty());
}

TEST_F(PluginTest, AllocateFailsWholeWhenOneDeviceFails) {
  agents_.Refuse(ids_[1]);
  auto admitted = kubelet_->AdmitPodWithDevices("ml", "trainer-0", "main", kResource, {ids_[0], ids_[1]});
  ASSERT_FALSE(admitted.ok());
  EXPECT_EQ(admitted.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(admitted.status().message(), ids_[1])) << admitted.status();
  EXPECT_TRUE(absl::StrContains(admitted.status().message(), "no BAR space")) << admitted.status();
  // Nothing half-attached: no session, no claim, no files.
  EXPECT_EQ(agents_.opened(), 1);
  EXPECT_EQ(agents_.open_sessions(), 0u);
  EXPECT_TRUE(plugin_->SessionDevices().empty());
  EXPECT_TRUE(controller_->manager().Attachments().empty());
  EXPECT_TRUE(Entries(dir_ + "/cdi").empty());
  EXPECT_TRUE(Entries(dir_ + "/state").empty());
  // The first device is free to allocate again.
  EXPECT_TRUE(kubelet_->AdmitPodWithDevices("ml", "trainer-1", "main", kResource, {ids_[0]}).ok());
}

TEST_F(PluginTest, AllocateRejectsADeviceNotAssignedToThisNode) {
  v1beta1::AllocateRequest req;
  req.add_container_requests()->add_devices_ids("dev-z-0000-01-00-0");
  auto resp = kubelet_->Allocate(kResource, req);
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(resp.status().message(), "dev-z-0000-01-00-0")) << resp.status();
  v1beta1::AllocateRequest empty;
  empty.add_container_requests();
  EXPECT_EQ(kubelet_->Allocate(kResource, empty).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(agents_.opened(), 0);
}

TEST_F(PluginTest, PreStartContainerFailsWhenTheSessionIsGone) {
  auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  agents_.SetLost(admitted->device_ids[0], true);
  absl::Status s = kubelet_->PreStartContainer(kResource, admitted->device_ids);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), admitted->device_ids[0])) << s;
  EXPECT_EQ(kubelet_->PreStartContainer(kResource, {ids_[2] == admitted->device_ids[0] ? ids_[1] : ids_[2]}).code(),
            absl::StatusCode::kFailedPrecondition);  // never allocated
}

TEST_F(PluginTest, HealthFollowsTheAgentAndRecovers) {
  agents_.SetDown(kAgent, true);
  EXPECT_TRUE(AllDevicesBecome("Unhealthy"));
  agents_.SetDown(kAgent, false);
  EXPECT_TRUE(AllDevicesBecome("Healthy"));
}

TEST_F(PluginTest, HealthFollowsSessionLossAndRecovers) {
  absl::StatusOr<std::string> lost = AdmitOneDevicePod();
  ASSERT_TRUE(lost.ok()) << lost.status();
  agents_.SetLost(*lost, true);
  auto only_lost_unhealthy = [&](const std::vector<AdvertisedDevice>& ds) {
    if (ds.size() != 3) return false;
    for (const AdvertisedDevice& d : ds) {
      if ((d.id == *lost) != (d.health == "Unhealthy")) return false;
    }
    return true;
  };
  EXPECT_TRUE(kubelet_->WaitForDevices(kResource, only_lost_unhealthy, absl::Seconds(2)));
  agents_.SetLost(*lost, false);
  EXPECT_TRUE(AllDevicesBecome("Healthy"));
}

TEST_F(PluginTest, ReleasesSessionsOfPodsThatAreGone) {
  absl::StatusOr<std::string> id = AdmitOneDevicePod();
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(plugin_->SyncUsage().ok());
  EXPECT_EQ(plugin_->SessionDevices(), std::vector<std::string>{*id});  // still in pod-resources
  EXPECT_EQ(controller_->manager().Attachments().size(), 1u);

  kubelet_->RemovePod("ml", "trainer-0");
  ASSERT_TRUE(plugin_->SyncUsage().ok());
  EXPECT_TRUE(plugin_->SessionDevices().empty());
  EXPECT_EQ(agents_.open_sessions(), 0u);
  EXPECT_TRUE(controller_->manager().Attachments().empty());
  EXPECT_TRUE(Entries(dir_ + "/cdi").empty());
  EXPECT_TRUE(Entries(dir_ + "/state").empty());
}

// The kubelet restarts a container without Allocate, calling
// PreStartContainer before each start: every restart is accepted and the
// session is the one Allocate made.
TEST_F(PluginTest, ContainerRestartsArePreStartedWithoutAllocate) {
  auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  const int allocations = kubelet_->allocate_calls();
  for (int restart = 0; restart < 3; ++restart) {
    absl::StatusOr<rpci::testing::AdmittedContainer> again = kubelet_->RestartContainer("ml", "trainer-0", "main");
    ASSERT_TRUE(again.ok()) << "restart " << restart << ": " << again.status();
    EXPECT_EQ(again->response.envs().at("RPCI_SESSION_ID"), admitted->response.envs().at("RPCI_SESSION_ID"));
  }
  EXPECT_EQ(kubelet_->allocate_calls(), allocations);
  EXPECT_EQ(agents_.open_sessions(), 1u);
}

// The attachment is claimed for the allocation and names the pod once
// pod-resources lists it; the session ends the moment pod-resources stops
// listing the device, whatever the release grace (which is only for
// allocations pod-resources has never listed).
TEST_F(PluginTest, AttachmentNamesThePodAndPodEndReleasesAtOnce) {
  plugin_->Stop();
  options_.release_grace = absl::Hours(1);
  plugin_ = std::make_unique<Plugin>(options_, client_.get(), &agents_);
  ASSERT_TRUE(plugin_->Start().ok());
  plugin_->SetAssignments(controller_->manager().AssignmentsFor("cn-1"));
  ASSERT_TRUE(AllDevicesBecome("Healthy", absl::Seconds(5)));
  auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  std::vector<controller::Attachment> atts = controller_->manager().Attachments();
  ASSERT_EQ(atts.size(), 1u);
  EXPECT_TRUE(atts[0].pod_name.empty()) << "Allocate names no pod";
  EXPECT_EQ(atts[0].allocation.rfind("alloc-", 0), 0u) << atts[0].allocation;
  ASSERT_TRUE(plugin_->SyncUsage().ok());
  atts = controller_->manager().Attachments();
  ASSERT_EQ(atts.size(), 1u);
  EXPECT_EQ(atts[0].pod_namespace, "ml");
  EXPECT_EQ(atts[0].pod_name, "trainer-0");
  EXPECT_EQ(atts[0].container_name, "main");

  kubelet_->RemovePod("ml", "trainer-0");
  ASSERT_TRUE(plugin_->SyncUsage().ok());
  EXPECT_TRUE(plugin_->SessionDevices().empty()) << "released although the grace is an hour";
  EXPECT_TRUE(controller_->manager().Attachments().empty());
  EXPECT_TRUE(AllDevicesBecome("Healthy"));
  // An allocation pod-resources never listed keeps its grace.
  auto unlisted = kubelet_->Allocate(kResource, [&] {
    v1beta1::AllocateRequest req;
    req.add_container_requests()->add_devices_ids(admitted->device_ids[0]);
    return req;
  }());
  ASSERT_TRUE(unlisted.ok()) << unlisted.status();
  ASSERT_TRUE(plugin_->SyncUsage().ok());
  EXPECT_EQ(plugin_->SessionDevices().size(), 1u);
}

TEST_F(PluginTest, UsageSyncReleasesNothingWhenPodResourcesIsUnreachable) {
  auto admitted = kubelet_->AdmitPod("ml", "trainer-0", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  kubelet_->Stop();
  EXPECT_EQ(plugin_->SyncUsage().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(plugin_->SessionDevices().size(), 1u);
}

TEST_F(PluginTest, PreferredAllocationGoesThroughTheKubelet) {
  rpci::v1::AssignmentSet set;
  auto add = [&](const std::string& server, const std::string& id, const std::string& provider, bool nic) {
    rpci::v1::Assignment* a = set.add_assignments();
    a->mutable_device()->set_id(id);
    a->mutable_device()->set_node(server);
    a->mutable_device()->set_pool("emu");
    a->mutable_device()->set_health(rpci::v1::DEVICE_HEALTH_HEALTHY);
    if (nic) a->mutable_device()->add_local_nics("mlx5_0");
    a->set_agent_session_endpoint(server + ":7443");
    a->set_agent_fabric_provider(provider);
  };
  add("s1", "s1-d0", "tcp;ofi_rxm", false);
  add("s2", "s2-d0", "tcp;ofi_rxm", false);
  add("s2", "s2-d1", "tcp;ofi_rxm", false);
  add("s3", "s3-d0", "verbs;ofi_rxm", true);
  add("s3", "s3-d1", "verbs;ofi_rxm", true);
  plugin_->SetAssignments(set);
  v1beta1::PreferredAllocationRequest req;
  auto* c = req.add_container_requests();
  for (const char* id : {"s1-d0", "s2-d0", "s2-d1", "s3-d0", "s3-d1"}) c->add_available_deviceids(id);
  c->set_allocation_size(2);
  auto* must = req.add_container_requests();
  for (const char* id : {"s1-d0", "s2-d0", "s2-d1"}) must->add_available_deviceids(id);
  must->add_must_include_deviceids("s2-d1");
  must->set_allocation_size(2);
  auto resp = kubelet_->GetPreferredAllocation(kResource, req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->container_responses_size(), 2);
  EXPECT_EQ(std::vector<std::string>(resp->container_responses(0).deviceids().begin(),
                                     resp->container_responses(0).deviceids().end()),
            (std::vector<std::string>{"s3-d0", "s3-d1"}));
  EXPECT_EQ(std::vector<std::string>(resp->container_responses(1).deviceids().begin(),
                                     resp->container_responses(1).deviceids().end()),
            (std::vector<std::string>{"s2-d1", "s2-d0"}));

  c->set_allocation_size(9);
  EXPECT_EQ(kubelet_->GetPreferredAllocation(kResource, req).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rpci::plugin
