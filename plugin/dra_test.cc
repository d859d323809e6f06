// The DRA kubelet plugin against the fake kubelet's DRA side (plugin
// watcher, DRA v1/v1beta1 calls, CDI injection as a runtime does it), the
// controller's PrepareClaim/UnprepareClaim over gRPC and agents reduced to
// their session control surface.
#include "plugin/dra_driver.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <sstream>

#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "plugin/testing/claim_controller.h"
#include "plugin/testing/test_env.h"
#include "tests/kubelet/fake_dra_kubelet.h"

namespace rpci::plugin {
namespace {

using ::rpci::testing::ClaimRef;
using ::rpci::testing::FakeDraKubelet;

constexpr char kNode[] = "node-a";
constexpr char kAgent[] = "10.0.0.9:7100";
const ClaimRef kClaim{"team", "gpu-claim", "0b3c2f1e-1111-4a4a-9b9b-000000000001"};
const ClaimRef kOther{"team", "other", "0b3c2f1e-1111-4a4a-9b9b-000000000002"};

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The agents, with opening a session on device "dev-slow" taking a second
// (an agent still scrubbing it for the previous tenant).
class SlowOpener final : public SessionOpener {
 public:
  explicit SlowOpener(SessionOpener* agents) : agents_(agents) {}
  absl::StatusOr<AttachedSession> Open(const rpci::v1::SessionGrant& grant, const std::string& endpoint) override {
    if (grant.device_id() == "dev-slow") absl::SleepFor(absl::Seconds(1));
    return agents_->Open(grant, endpoint);
  }
  absl::Status Close(const AttachedSession& s) override { return agents_->Close(s); }
  absl::Status Check(const AttachedSession& s) override { return agents_->Check(s); }
  absl::Status ProbeAgent(const std::string& e, absl::Duration t) override { return agents_->ProbeAgent(e, t); }

 private:
  SessionOpener* const agents_;
};

class DraTest : public ::testing::Test {
 protected:
  DraTest()
      : kubelet_dir_(rpci::testing::MakeTempDir("rpci-dra", rpci::testing::TempDirUse::kSockets)),
        files_(rpci::testing::MakeTempDir("rpci-dra-files")),
        controller_client_(controller_.Channel()) {
    options_.node_name = kNode;
    options_.dra_pools = {"emu"};
    options_.kubelet_dir = kubelet_dir_;
    options_.cdi_dir = files_ + "/cdi";
    options_.state_dir = files_ + "/state";
    options_.container_dir = "/var/run/rpci";
  }
  ~DraTest() override {
    if (driver_) driver_->Stop();
    if (kubelet_) kubelet_->Stop();
  }

  void StartKubelet(std::vector<std::string> services = {"v1.DRAPlugin", "v1beta1.DRAPlugin"}) {
    kubelet_ = std::make_unique<FakeDraKubelet>(kubelet_dir_, options_.cdi_dir, std::move(services));
    ASSERT_TRUE(kubelet_->Start().ok());
  }
  void StartDriver() {
    driver_ = std::make_unique<DraDriver>(options_, &controller_client_, &opener_);
    ASSERT_TRUE(driver_->Start().ok());
  }
  // Kubelet and driver up, the driver registered.
  void StartBoth() {
    StartKubelet();
    StartDriver();
    ASSERT_TRUE(kubelet_->WaitForDriver(kDraDriverName, 1, absl::Seconds(5)));
  }
  void AllocateTwo(const ClaimRef& c) { controller_.Allocate(c.uid, kNode, kAgent, {{"emu", "dev-a"}, {"emu", "dev-b"}}); }

  std::string kubelet_dir_, files_;
  PluginOptions options_;
  testing::ClaimController controller_;
  GrpcControllerClient controller_client_;
  testing::TestAgents agents_;
  SlowOpener opener_{&agents_};
  std::unique_ptr<FakeDraKubelet> kubelet_;
  std::unique_ptr<DraDriver> driver_;
};

TEST_F(DraTest, RegistersThroughPluginsRegistryAdvertisingV1AndV1beta1) {
  StartBoth();
  // Attempts that found the socket before its listener (GetInfo failed, as
  // it can at the kubelet) are retried by the reconciler; one registration
  // succeeds and nothing is refused.
  std::vector<rpci::testing::DraRegistration> regs;
  for (const rpci::testing::DraRegistration& r : kubelet_->registrations()) {
    if (r.error.empty()) {
      regs.push_back(r);
    } else {
      EXPECT_EQ(r.error.rfind("GetInfo: ", 0), 0u) << r.error;
    }
  }
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].socket, kubelet_dir_ + "/plugins_registry/rpci.io-reg.sock");
  EXPECT_EQ(regs[0].type, "DRAPlugin");
  EXPECT_EQ(regs[0].driver, "rpci.io");
  EXPECT_EQ(regs[0].endpoint, kubelet_dir_ + "/plugins/rpci.io/dra.sock");
  EXPECT_EQ(regs[0].supported_versions, (std::vector<std::string>{"v1.DRAPlugin", "v1beta1.DRAPlugin"}));
  EXPECT_EQ(kubelet_->ChosenService("rpci.io"), "v1.DRAPlugin");
  for (int i = 0; i < 50 && driver_->registrations() == 0; ++i) usleep(20 * 1000);
  EXPECT_EQ(driver_->registrations(), 1);  // NotifyRegistrationStatus reached the plugin
}

TEST_F(DraTest, AKubeletOfferingOnlyV1beta1PreparesThroughV1beta1) {
  StartKubelet({"v1beta1.DRAPlugin"});  // 1.32-1.33
  StartDriver();
  ASSERT_TRUE(kubelet_->WaitForDriver(kDraDriverName, 1, absl::Seconds(5)));
  EXPECT_EQ(kubelet_->ChosenService("rpci.io"), "v1beta1.DRAPlugin");
  AllocateTwo(kClaim);
  absl::StatusOr<std::vector<std::string>> ids = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->size(), 2u);
  EXPECT_TRUE(kubelet_->UnprepareClaim(kDraDriverName, kClaim).ok());
}

TEST_F(DraTest, RefusedRegistrationIsLoggedAndTriedAgain) {
  StartKubelet({"v1alpha4.NodeService"});  // a kubelet that speaks none of ours
  StartDriver();
  auto refusals = [&] {
    int n = 0;
    for (const rpci::testing::DraRegistration& r : kubelet_->registrations()) {
      n += r.error.find("none of the supported versions") != std::string::npos;
    }
    return n;
  };
  for (int i = 0; i < 250 && (refusals() < 2 || driver_->registration_failures() < 2); ++i) usleep(20 * 1000);
  EXPECT_GE(refusals(), 2);
  EXPECT_GE(driver_->registration_failures(), 2);  // NotifyRegistrationStatus(false) reached the plugin
  EXPECT_EQ(driver_->registrations(), 0);
}

TEST_F(DraTest, PrepareAnswersCdiIdsWhoseEditsCarryEachSession) {
  StartBoth();
  AllocateTwo(kClaim);
  absl::StatusOr<drapb::NodePrepareResourcesResponse> resp = kubelet_->NodePrepareResources(kDraDriverName, {kClaim});
  ASSERT_TRUE(resp.ok()) << resp.status();
  const drapb::NodePrepareResourceResponse& entry = resp->claims().at(kClaim.uid);
  ASSERT_EQ(entry.error(), "");
  ASSERT_EQ(entry.devices_size(), 2);
  EXPECT_EQ(entry.devices(0).pool_name(), "emu");
  EXPECT_EQ(entry.devices(0).device_name(), "dev-a");
  EXPECT_EQ(entry.devices(0).request_names(0), "remote");
  EXPECT_EQ(entry.devices(0).cdi_device_ids(0), "rpci.io/claim=" + kClaim.uid + "-dev-a");
  EXPECT_EQ(entry.devices(1).cdi_device_ids(0), "rpci.io/claim=" + kClaim.uid + "-dev-b");
  EXPECT_EQ(agents_.open_sessions(), 2u);

  // The runtime applies the ids from the spec file, as containerd would.
  absl::StatusOr<v1beta1::ContainerAllocateResponse> edits =
      kubelet_->ContainerEdits({entry.devices(0).cdi_device_ids(0), entry.devices(1).cdi_device_ids(0)});
  ASSERT_TRUE(edits.ok()) << edits.status();
  const auto& env = edits->envs();
  EXPECT_EQ(env.at("RPCI_DEVICE_COUNT"), "2");
  EXPECT_EQ(env.at("RPCI_DEVICE_IDS"), "dev-a,dev-b");
  EXPECT_EQ(env.at("RPCI_POOL"), "emu");
  EXPECT_EQ(env.at("RPCI_0_DEVICE_ID"), "dev-a");
  EXPECT_EQ(env.at("RPCI_1_DEVICE_ID"), "dev-b");
  EXPECT_EQ(env.at("RPCI_0_SESSION_ENDPOINT"), kAgent);
  EXPECT_EQ(env.at("RPCI_SESSION_ID"), env.at("RPCI_0_SESSION_ID"));
  EXPECT_EQ(env.at("RPCI_0_SESSION_KEY_FILE"), "/var/run/rpci/dev-a/key");
  ASSERT_EQ(edits->mounts_size(), 2);
  EXPECT_EQ(edits->mounts(0).host_path(), files_ + "/state/claims/" + kClaim.uid + "/dev-a");
  EXPECT_EQ(edits->mounts(0).container_path(), "/var/run/rpci/dev-a");
  EXPECT_TRUE(edits->mounts(0).read_only());
  // The key sits in the session dir, root-only; the CDI spec never holds it.
  struct stat st;
  ASSERT_EQ(stat((edits->mounts(0).host_path() + "/key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string key = Slurp(edits->mounts(0).host_path() + "/key");
  EXPECT_EQ(Slurp(ClaimCdiSpecPath(options_.cdi_dir, kClaim.uid)).find(key.substr(0, 32)), std::string::npos);
  EXPECT_EQ(Slurp(DraCheckpointPath(options_.state_dir)).find(key.substr(0, 32)), std::string::npos);
}

TEST_F(DraTest, PreparingAgainAnswersTheSameIdsWithoutNewSessions) {
  StartBoth();
  AllocateTwo(kClaim);
  absl::StatusOr<std::vector<std::string>> first = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string spec = Slurp(ClaimCdiSpecPath(options_.cdi_dir, kClaim.uid));
  absl::StatusOr<std::vector<std::string>> again = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *first);
  EXPECT_EQ(agents_.opened(), 2);
  EXPECT_EQ(controller_.prepares(), 1);
  EXPECT_EQ(Slurp(ClaimCdiSpecPath(options_.cdi_dir, kClaim.uid)), spec);
  // A lost CDI dir (tmpfs after a host reboot) is written again.
  unlink(ClaimCdiSpecPath(options_.cdi_dir, kClaim.uid).c_str());
  ASSERT_TRUE(kubelet_->PrepareClaim(kDraDriverName, kClaim).ok());
  EXPECT_EQ(Slurp(ClaimCdiSpecPath(options_.cdi_dir, kClaim.uid)), spec);
}

TEST_F(DraTest, OneFailingClaimFailsOnlyItsOwnEntry) {
  StartBoth();
  AllocateTwo(kClaim);  // kOther has no allocation at the controller
  absl::StatusOr<drapb::NodePrepareResourcesResponse> resp =
      kubelet_->NodePrepareResources(kDraDriverName, {kOther, kClaim});
  ASSERT_TRUE(resp.ok()) << resp.status();  // not a failed RPC
  ASSERT_EQ(resp->claims_size(), 2);
  EXPECT_EQ(resp->claims().at(kClaim.uid).error(), "");
  EXPECT_EQ(resp->claims().at(kClaim.uid).devices_size(), 2);
  const std::string& error = resp->claims().at(kOther.uid).error();
  EXPECT_NE(error.find("claim team/other"), std::string::npos) << error;
  EXPECT_NE(error.find("has no allocation"), std::string::npos) << error;
  EXPECT_EQ(resp->claims().at(kOther.uid).devices_size(), 0);
}

TEST_F(DraTest, FailedPrepareGivesBackEverySessionAndTheGrants) {
  StartBoth();
  AllocateTwo(kClaim);
  agents_.Refuse("dev-b");  // the second device's agent has no room
  absl::StatusOr<std::vector<std::string>> ids = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_FALSE(ids.ok());
  EXPECT_NE(ids.status().message().find("dev-b"), std::string::npos) << ids.status();
  EXPECT_EQ(agents_.open_sessions(), 0u);  // dev-a's session closed again
  EXPECT_EQ(controller_.granted(), 0);
  EXPECT_FALSE(Exists(ClaimCdiSpecPath(options_.cdi_dir, kClaim.uid)));
  EXPECT_FALSE(Exists(options_.state_dir + "/claims/" + kClaim.uid));
  EXPECT_TRUE(driver_->PreparedClaims().empty());
}

TEST_F(DraTest, DeviceOfAPoolNotServedThroughDraIsRefused) {
  StartBoth();
  controller_.Allocate(kClaim.uid, kNode, kAgent, {{"gpu", "dev-g"}});
  absl::StatusOr<std::vector<std::string>> ids = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_FALSE(ids.ok());
  EXPECT_NE(ids.status().message().find("pool gpu is not served through DRA"), std::string::npos) << ids.status();
  EXPECT_EQ(agents_.opened(), 0);
  EXPECT_EQ(controller_.granted(), 0);
}

TEST_F(DraTest, DeviceNamesUnfitForPathsAndCdiIdsAreRefused) {
  StartBoth();
  for (const std::string bad : {"../../etc", "a/b", ".hidden", "dev a"}) {
    controller_.Allocate(kClaim.uid, kNode, kAgent, {{"emu", bad}});
    absl::StatusOr<std::vector<std::string>> ids = kubelet_->PrepareClaim(kDraDriverName, kClaim);
    ASSERT_FALSE(ids.ok()) << bad;
    EXPECT_NE(ids.status().message().find("not a name rpci can use"), std::string::npos) << ids.status();
  }
  EXPECT_EQ(agents_.opened(), 0);
  EXPECT_EQ(controller_.granted(), 0);
}

TEST_F(DraTest, AClaimWaitingForItsAgentDoesNotHoldUpAnother) {
  StartBoth();
  controller_.Allocate(kClaim.uid, kNode, kAgent, {{"emu", "dev-slow"}});
  controller_.Allocate(kOther.uid, kNode, kAgent, {{"emu", "dev-b"}});
  std::atomic<bool> slow_done{false};
  std::thread slow([&] {
    EXPECT_TRUE(kubelet_->PrepareClaim(kDraDriverName, kClaim).ok());
    slow_done = true;
  });
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Time start = absl::Now();
  EXPECT_TRUE(kubelet_->PrepareClaim(kDraDriverName, kOther).ok());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(700));
  EXPECT_FALSE(slow_done);
  slow.join();
  EXPECT_EQ(driver_->PreparedClaims().size(), 2u);
}

TEST_F(DraTest, ClaimOperationsAndRegistrationsAreCounted) {
  MetricsRegistry metrics;
  options_.metrics = &metrics;
  StartBoth();
  AllocateTwo(kClaim);
  ASSERT_TRUE(kubelet_->PrepareClaim(kDraDriverName, kClaim).ok());
  ASSERT_FALSE(kubelet_->PrepareClaim(kDraDriverName, kOther).ok());
  ASSERT_TRUE(kubelet_->UnprepareClaim(kDraDriverName, kClaim).ok());
  for (int i = 0; i < 50 && driver_->registrations() == 0; ++i) usleep(20 * 1000);
  const std::string text = metrics.Render();
  EXPECT_NE(text.find("rpci_plugin_dra_claims_total{op=\"prepare\",result=\"ok\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("rpci_plugin_dra_claims_total{op=\"prepare\",result=\"failed\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("rpci_plugin_dra_claims_total{op=\"unprepare\",result=\"ok\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("rpci_plugin_dra_registrations_total 1"), std::string::npos) << text;
}

TEST_F(DraTest, MalformedClaimIsRefusedInItsEntry) {
  StartBoth();
  ClaimRef bad{"team", "x", "../../etc"};
  absl::StatusOr<drapb::NodePrepareResourcesResponse> resp = kubelet_->NodePrepareResources(kDraDriverName, {bad});
  ASSERT_TRUE(resp.ok());
  EXPECT_NE(resp->claims().at(bad.uid).error().find("is not a UUID"), std::string::npos);
  EXPECT_EQ(controller_.prepares(), 0);
}

TEST_F(DraTest, UnprepareClosesSessionsGivesBackGrantsAndRemovesFiles) {
  StartBoth();
  AllocateTwo(kClaim);
  ASSERT_TRUE(kubelet_->PrepareClaim(kDraDriverName, kClaim).ok());
  ASSERT_EQ(controller_.granted(), 2);
  ASSERT_TRUE(kubelet_->UnprepareClaim(kDraDriverName, kClaim).ok());
  EXPECT_EQ(agents_.open_sessions(), 0u);
  EXPECT_EQ(controller_.granted(), 0);
  EXPECT_FALSE(Exists(ClaimCdiSpecPath(options_.cdi_dir, kClaim.uid)));
  EXPECT_FALSE(Exists(options_.state_dir + "/claims/" + kClaim.uid));
  EXPECT_TRUE(driver_->PreparedClaims().empty());
  // Again, and for a claim never prepared here: OK both times.
  EXPECT_TRUE(kubelet_->UnprepareClaim(kDraDriverName, kClaim).ok());
  EXPECT_TRUE(kubelet_->UnprepareClaim(kDraDriverName, kOther).ok());
  // The device comes back: the claim is prepared afresh with new sessions.
  absl::StatusOr<std::vector<std::string>> ids = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(agents_.opened(), 4);
}

TEST_F(DraTest, UnprepareWithTheAgentDownStillGivesTheGrantsBack) {
  StartBoth();
  AllocateTwo(kClaim);
  ASSERT_TRUE(kubelet_->PrepareClaim(kDraDriverName, kClaim).ok());
  agents_.SetDown(kAgent, true);  // the controller's revocation ends the sessions
  EXPECT_TRUE(kubelet_->UnprepareClaim(kDraDriverName, kClaim).ok());
  EXPECT_EQ(controller_.granted(), 0);
  EXPECT_FALSE(Exists(ClaimCdiSpecPath(options_.cdi_dir, kClaim.uid)));
  EXPECT_TRUE(driver_->PreparedClaims().empty());
}

TEST_F(DraTest, UnprepareWithTheControllerAwayFailsItsEntryAndSucceedsWhenCalledAgain) {
  StartBoth();
  AllocateTwo(kClaim);
  ASSERT_TRUE(kubelet_->PrepareClaim(kDraDriverName, kClaim).ok());
  controller_.SetUnavailable(true);
  absl::Status s = kubelet_->UnprepareClaim(kDraDriverName, kClaim);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);  // the entry's error, as the fake kubelet reports it
  EXPECT_NE(s.message().find("unprepare at controller"), std::string::npos) << s;
  EXPECT_EQ(controller_.granted(), 2);  // not given back yet
  EXPECT_EQ(agents_.open_sessions(), 0u);
  controller_.SetUnavailable(false);
  EXPECT_TRUE(kubelet_->UnprepareClaim(kDraDriverName, kClaim).ok());  // the kubelet's retry
  EXPECT_EQ(controller_.granted(), 0);
  EXPECT_TRUE(driver_->PreparedClaims().empty());
}

TEST_F(DraTest, PluginRestartKeepsPreparedClaimsAndTheirIds) {
  StartBoth();
  AllocateTwo(kClaim);
  absl::StatusOr<std::vector<std::string>> first = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_TRUE(first.ok()) << first.status();
  driver_->Stop();
  driver_.reset();
  StartDriver();
  ASSERT_TRUE(kubelet_->WaitForDriver(kDraDriverName, 2, absl::Seconds(5)));
  EXPECT_EQ(driver_->PreparedClaims(), std::vector<std::string>{kClaim.uid});
  absl::StatusOr<std::vector<std::string>> again = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *first);
  EXPECT_EQ(agents_.opened(), 2);
  EXPECT_EQ(controller_.prepares(), 1);
  // The restored sessions can be closed (their keys come back from the
  // session dirs).
  ASSERT_TRUE(kubelet_->UnprepareClaim(kDraDriverName, kClaim).ok());
  EXPECT_EQ(agents_.open_sessions(), 0u);
  EXPECT_EQ(controller_.granted(), 0);
}

TEST_F(DraTest, KubeletRestartFindsThePluginAgainAndChangesNothing) {
  StartBoth();
  AllocateTwo(kClaim);
  absl::StatusOr<std::vector<std::string>> first = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(kubelet_->Restart().ok());
  ASSERT_TRUE(kubelet_->WaitForDriver(kDraDriverName, 1, absl::Seconds(5)));  // found by the initial walk
  absl::StatusOr<std::vector<std::string>> again = kubelet_->PrepareClaim(kDraDriverName, kClaim);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *first);
  EXPECT_EQ(agents_.opened(), 2);
  EXPECT_EQ(agents_.open_sessions(), 2u);
}

TEST_F(DraTest, UnreadableCheckpointIsKeptAsideAndTheDriverStarts) {
  ASSERT_EQ(mkdir(options_.state_dir.c_str(), 0755), 0);
  std::ofstream(DraCheckpointPath(options_.state_dir)) << "{\"version\": 1, \"claims\": {\"u\": {\"devices\": 3";
  StartBoth();
  EXPECT_TRUE(driver_->PreparedClaims().empty());
  EXPECT_TRUE(Exists(DraCheckpointPath(options_.state_dir) + ".corrupt"));
  AllocateTwo(kClaim);
  EXPECT_TRUE(kubelet_->PrepareClaim(kDraDriverName, kClaim).ok());
  EXPECT_TRUE(Exists(DraCheckpointPath(options_.state_dir)));
}

TEST(ParsePoolsTest, ModesSplitPoolsBetweenDevicePluginAndDra) {
  PluginOptions o;
  ASSERT_TRUE(ParsePools("emu, gpu:dra,nvme:both,fpga:device-plugin", &o).ok());
  EXPECT_EQ(o.pools, (std::vector<std::string>{"emu", "nvme", "fpga"}));
  EXPECT_EQ(o.dra_pools, (std::vector<std::string>{"gpu", "nvme"}));
}

TEST(ParsePoolsTest, BadEntriesAreRefusedByName) {
  PluginOptions o;
  absl::Status s = ParsePools("emu:dra2", &o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dra2"), std::string::npos);
  EXPECT_EQ(ParsePools("a/b", &o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParsePools(":dra", &o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParsePools("a:dra:x", &o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParsePools("", &o).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rpci::plugin
