#include "controller/kube_store.h"

#include "common/testing/manual_clock.h"
#include "controller/pool_manager.h"
#include "controller/testing/installed_api_server.h"
#include "controller/testing/registrations.h"
#include "gtest/gtest.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace rpci::controller {
namespace {

using nlohmann::json;
using testing::AgentWith;
using testing::NodeWith;

const std::string kAttachments = "/apis/rpci.io/v1alpha1/namespaces/rpci-system/deviceattachments/";

// A claim as the plugin makes it from Allocate: for an allocation, no pod yet.
rpci::v1::ClaimRequest AllocationClaim(const std::string& node, const std::string& device,
                                       const std::string& allocation) {
  rpci::v1::ClaimRequest claim;
  claim.set_node(node);
  claim.set_device_id(device);
  claim.set_pod_name(allocation);
  return claim;
}

class KubeStoreTest : public testing::InstalledApiServerTest {
 protected:
  void SetUp() override {
    InstalledApiServerTest::SetUp();
    options_.default_pool.spares_per_node = 1;
  }
  std::unique_ptr<PoolManager> NewManager(KubeStore* store) {
    auto m = std::make_unique<PoolManager>(store, &clock_, options_);
    EXPECT_TRUE(m->Load().ok());
    return m;
  }
  // NewManager with device server dev-a exporting `devices` emu devices and
  // node cn-1 asking for them, after one reconcile pass.
  std::unique_ptr<PoolManager> ReconciledManager(KubeStore* store, int devices) {
    auto m = NewManager(store);
    EXPECT_TRUE(m->RegisterAgent(AgentWith("dev-a", "emu", devices)).ok());
    EXPECT_TRUE(m->RegisterNode(NodeWith("cn-1", "emu")).ok());
    m->Reconcile();
    return m;
  }
  ManualClock clock_;
  PoolManager::Options options_;
};

TEST_F(KubeStoreTest, StateLivesInCrdsAndSurvivesControllerRestart) {
  KubeStore store(client_.get(), &clock_, kNs);
  auto m = ReconciledManager(&store, 2);
  ASSERT_FALSE(HasFailure());
  auto set = m->AssignmentsFor("cn-1");
  ASSERT_EQ(set.assignments_size(), 1);
  const std::string id = set.assignments(0).device().id();
  rpci::v1::ClaimRequest claim;
  claim.set_node("cn-1");
  claim.set_device_id(id);
  claim.set_pod_namespace("ml");
  claim.set_pod_name("trainer");
  auto grant = m->Claim(claim);
  ASSERT_TRUE(grant.ok()) << grant.status();

  auto obj = server_.Get("/apis/rpci.io/v1alpha1/pciedevices/" + id);
  ASSERT_TRUE(obj.ok());
  EXPECT_EQ((*obj)["status"]["phase"], "Attached");
  EXPECT_EQ((*obj)["status"]["assignedNode"], "cn-1");
  EXPECT_EQ((*obj)["spec"]["pool"], "emu");
  ASSERT_EQ((*obj)["status"]["conditions"].size(), 2u);
  EXPECT_EQ((*obj)["status"]["conditions"][0]["observedGeneration"], (*obj)["metadata"]["generation"]);
  auto att = server_.Get(kAttachments + grant->grant().grant_id());
  ASSERT_TRUE(att.ok());
  EXPECT_EQ((*att)["spec"]["device"], id);
  EXPECT_EQ((*att)["spec"]["podNamespace"], "ml");
  // The token is in the grant Secret, not in the attachment.
  const std::string token64 = absl::Base64Escape(grant->grant().token());
  EXPECT_EQ(att->dump().find(token64), std::string::npos) << att->dump();
  auto secret = server_.Get("/api/v1/namespaces/rpci-system/secrets/" + grant->grant().grant_id());
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ((*secret)["data"]["token"], token64);
  EXPECT_EQ((*secret)["metadata"]["ownerReferences"][0]["uid"], (*att)["metadata"]["uid"]);

  m.reset();  // the controller dies; a new one starts on the same cluster
  KubeStore store2(client_.get(), &clock_, kNs);
  auto m2 = NewManager(&store2);
  ASSERT_TRUE(m2->RegisterAgent(AgentWith("dev-a", "emu", 2)).ok());
  ASSERT_TRUE(m2->RegisterNode(NodeWith("cn-1", "emu")).ok());
  m2->Reconcile();  // one new spare for cn-1, the attached device stays
  auto atts = m2->Attachments();
  ASSERT_EQ(atts.size(), 1u);
  EXPECT_EQ(atts[0].token, grant->grant().token());
  EXPECT_EQ(m2->AssignmentsFor("cn-1").assignments_size(), 2);
  EXPECT_TRUE(m2->CheckInvariants().ok());

  rpci::v1::ReleaseRequest rel;
  rel.set_node("cn-1");
  rel.set_device_id(id);
  ASSERT_TRUE(m2->Release(rel).ok());
  EXPECT_FALSE(server_.Get(kAttachments + grant->grant().grant_id()).ok());
  EXPECT_FALSE(server_.Get("/api/v1/namespaces/rpci-system/secrets/" + grant->grant().grant_id()).ok());
}

// What a real cluster did to rpci: the attachment namespace does not exist.
// The claim is refused with the API server's words, the device is not left
// attached to a grant without an attachment, and every other write (device
// assignments, heartbeats) goes through at once.
TEST_F(KubeStoreTest, ARefusedAttachmentFailsItsClaimAndStallsNothingElse) {
  KubeStore store(client_.get(), &clock_, "no-such-namespace");
  auto m = ReconciledManager(&store, 2);
  ASSERT_FALSE(HasFailure());
  const std::string id = m->AssignmentsFor("cn-1").assignments(0).device().id();
  auto grant = m->Claim(AllocationClaim("cn-1", id, "alloc-1"));
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(grant.status().message().find("namespaces \"no-such-namespace\" not found"), std::string::npos)
      << grant.status();
  EXPECT_TRUE(m->Attachments().empty());
  EXPECT_TRUE(m->GetDevice(id)->attachment.empty());
  bool reported = false;
  for (const Decision& d : m->TakeDecisions()) reported |= d.action == "persist-failed" && d.device_id == id;
  EXPECT_TRUE(reported) << "the refusal is reported on the device (an Event)";

  // The rest of the store keeps working: heartbeats succeed and a new
  // assignment is written right away.
  rpci::v1::AgentHeartbeatRequest hb;
  hb.set_node("dev-a");
  EXPECT_TRUE(m->AgentHeartbeat(hb).ok());
  ASSERT_TRUE(m->RegisterNode(NodeWith("cn-2", "emu")).ok());
  m->Reconcile();
  auto on_cn2 = m->AssignmentsFor("cn-2");
  ASSERT_EQ(on_cn2.assignments_size(), 1);
  auto obj = server_.Get("/apis/rpci.io/v1alpha1/pciedevices/" + on_cn2.assignments(0).device().id());
  ASSERT_TRUE(obj.ok());
  EXPECT_EQ((*obj)["status"]["assignedNode"], "cn-2");
  obj = server_.Get("/apis/rpci.io/v1alpha1/pciedevices/" + id);
  EXPECT_EQ((*obj)["status"]["attachment"], "") << "no device names a grant that has no attachment";
  EXPECT_TRUE(m->CheckInvariants().ok());
}

// One device object the API server refuses (here: it keeps answering 409)
// is retried with a growing backoff while the other device is written.
TEST_F(KubeStoreTest, OneRefusedDeviceIsRetriedWithBackoffWhileOthersCommit) {
  options_.default_pool.spares_per_node = 2;
  KubeStore store(client_.get(), &clock_, kNs);
  auto m = NewManager(&store);
  ASSERT_TRUE(m->RegisterAgent(AgentWith("dev-a", "emu", 2)).ok());
  const std::vector<Device> devices = m->Devices();
  ASSERT_EQ(devices.size(), 2u);
  const std::string bad = devices[0].id(), good = devices[1].id();
  server_.InjectConflicts("/pciedevices/" + bad, 1000);
  ASSERT_TRUE(m->RegisterNode(NodeWith("cn-1", "emu")).ok());
  m->Reconcile();
  EXPECT_EQ((*server_.Get("/apis/rpci.io/v1alpha1/pciedevices/" + good))["status"]["assignedNode"], "cn-1");
  EXPECT_EQ(m->StoreBacklog(), std::vector<std::string>{"PcieDevice/" + bad});
  const int conflicts = server_.conflicts_returned();
  m->Reconcile();  // within the backoff: not tried again
  EXPECT_EQ(server_.conflicts_returned(), conflicts);
  server_.InjectConflicts("/pciedevices/" + bad, 0);
  clock_.Advance(absl::Seconds(1));
  m->Reconcile();
  EXPECT_EQ((*server_.Get("/apis/rpci.io/v1alpha1/pciedevices/" + bad))["status"]["assignedNode"], "cn-1");
  EXPECT_TRUE(m->StoreBacklog().empty());
}

// Allocate names no pod: the attachment says "Attaching" for the allocation
// until the plugin's usage report (from pod-resources) names the pod; the
// agent's heartbeat fills SESSION and WRITES.
TEST_F(KubeStoreTest, AttachmentNamesItsPodOncePodResourcesListsIt) {
  KubeStore store(client_.get(), &clock_, kNs);
  auto m = ReconciledManager(&store, 1);
  ASSERT_FALSE(HasFailure());
  const std::string id = m->AssignmentsFor("cn-1").assignments(0).device().id();
  auto grant = m->Claim(AllocationClaim("cn-1", id, "alloc-1"));
  ASSERT_TRUE(grant.ok()) << grant.status();
  const std::string path = kAttachments + grant->grant().grant_id();
  EXPECT_EQ((*server_.Get(path))["status"]["state"], "Attaching");
  EXPECT_EQ((*server_.Get(path))["spec"]["allocation"], "alloc-1");

  rpci::v1::ReportUsageRequest usage;
  usage.set_node("cn-1");
  rpci::v1::DeviceUsage* u = usage.add_usage();
  u->set_device_id(id);
  u->set_pod_namespace("ml");
  u->set_pod_name("trainer-0");
  u->set_container_name("train");
  ASSERT_TRUE(m->ReportUsage(usage).ok());
  rpci::v1::AgentHeartbeatRequest hb;
  hb.set_node("dev-a");
  rpci::v1::SessionReport* s = hb.add_sessions();
  s->set_device_id(id);
  s->set_session_id("00000000000000aa");
  s->set_writes_applied(21649);
  ASSERT_TRUE(m->AgentHeartbeat(hb).ok());
  json att = *server_.Get(path);
  EXPECT_EQ(att["spec"]["podNamespace"], "ml");
  EXPECT_EQ(att["spec"]["pod"], "trainer-0");
  EXPECT_EQ(att["spec"]["container"], "train");
  EXPECT_EQ(att["status"]["state"], "Attached");
  EXPECT_EQ(att["status"]["sessionId"], "00000000000000aa");
  EXPECT_EQ(att["status"]["writesApplied"], 21649);
  // The same allocation claiming again (a retried Allocate) gets the same grant.
  auto again = m->Claim(AllocationClaim("cn-1", id, "alloc-1"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->grant().grant_id(), grant->grant().grant_id());
}

TEST_F(KubeStoreTest, ConflictingStatusWritesAreRetried) {
  KubeStore store(client_.get(), &clock_, kNs);
  auto m = NewManager(&store);
  ASSERT_TRUE(m->RegisterAgent(AgentWith("dev-a", "emu", 1)).ok());
  server_.InjectConflicts("/status", 3);
  ASSERT_TRUE(m->RegisterNode(NodeWith("cn-1", "emu")).ok());
  m->Reconcile();
  EXPECT_EQ(server_.conflicts_returned(), 3);
  auto obj = server_.Get("/apis/rpci.io/v1alpha1/pciedevices/dev-a-0000-3b-00-0");
  ASSERT_TRUE(obj.ok());
  EXPECT_EQ((*obj)["status"]["assignedNode"], "cn-1");
}

TEST_F(KubeStoreTest, UnreachableApiServerKeepsChangesDirtyUntilItReturns) {
  KubeStore store(client_.get(), &clock_, kNs);
  auto m = NewManager(&store);
  ASSERT_TRUE(m->RegisterAgent(AgentWith("dev-a", "emu", 1)).ok());
  ASSERT_TRUE(m->RegisterNode(NodeWith("cn-1", "emu")).ok());
  server_.InjectConflicts("/pciedevices/", 1000);
  m->Reconcile();  // assignment made in memory, store write fails
  EXPECT_EQ(m->AssignmentsFor("cn-1").assignments_size(), 1);
  server_.InjectConflicts("/pciedevices/", 0);
  clock_.Advance(absl::Seconds(1));  // past the object's retry backoff
  m->Reconcile();  // nothing new to decide, but the dirty device is written
  auto obj = server_.Get("/apis/rpci.io/v1alpha1/pciedevices/dev-a-0000-3b-00-0");
  EXPECT_EQ((*obj)["status"]["assignedNode"], "cn-1");
}

TEST(DemandOfPodTest, PendingPodUnschedulableForRpciResource) {
  json pod = json::parse(R"({
    "metadata": {"name": "trainer", "namespace": "ml"},
    "spec": {"nodeSelector": {"kubernetes.io/hostname": "cn-2"},
             "containers": [{"name": "a", "resources": {"limits": {"rpci.io/gpu": "2", "cpu": "1"}}},
                            {"name": "b", "resources": {"requests": {"rpci.io/gpu": 1}}}]},
    "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
               "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient rpci.io/gpu."}]}})");
  auto demand = DemandOfPod(pod);
  ASSERT_EQ(demand.size(), 1u);
  EXPECT_EQ(demand[0].pool, "gpu");
  EXPECT_EQ(demand[0].count, 3);
  EXPECT_EQ(demand[0].node_hint, "cn-2");
  EXPECT_EQ(demand[0].pod_namespace, "ml");
  // Unschedulable for CPU only: no rpci demand.
  pod["status"]["conditions"][0]["message"] = "0/3 nodes are available: 3 Insufficient cpu.";
  EXPECT_TRUE(DemandOfPod(pod).empty());
  EXPECT_TRUE(DemandOfPod(json("garbage")).empty());
}

}  // namespace
}  // namespace rpci::controller
