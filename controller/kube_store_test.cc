#include "controller/kube_store.h"

#include "controller/pool_manager.h"
#include "controller/testing_util.h"
#include "gtest/gtest.h"
#include "tests/kube/api_server.h"

namespace rpci::controller {
namespace {

using nlohmann::json;
using testing::AgentWith;
using testing::NodeWith;

class KubeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kError);
    ASSERT_TRUE(server_.Start().ok());
    kube::KubeConfig config;
    config.server = server_.url();
    client_ = *kube::KubeClient::Create(config);
    options_.default_pool.spares_per_node = 1;
  }
  std::unique_ptr<PoolManager> NewManager(KubeStore* store) {
    auto m = std::make_unique<PoolManager>(store, &clock_, options_);
    EXPECT_TRUE(m->Load().ok());
    return m;
  }
  kubetest::ApiServer server_;
  std::unique_ptr<kube::KubeClient> client_;
  ManualClock clock_;
  PoolManager::Options options_;
};

TEST_F(KubeStoreTest, StateLivesInCrdsAndSurvivesControllerRestart) {
  KubeStore store(client_.get(), &clock_);
  auto m = NewManager(&store);
  ASSERT_TRUE(m->RegisterAgent(AgentWith("dev-a", "emu", 2)).ok());
  ASSERT_TRUE(m->RegisterNode(NodeWith("cn-1", "emu")).ok());
  m->Reconcile();
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
  auto att = server_.Get("/apis/rpci.io/v1alpha1/namespaces/ml/deviceattachments/" + grant->grant().grant_id());
  ASSERT_TRUE(att.ok());
  EXPECT_EQ((*att)["spec"]["device"], id);

  m.reset();  // the controller dies; a new one starts on the same cluster
  KubeStore store2(client_.get(), &clock_);
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
  EXPECT_FALSE(server_.Get("/apis/rpci.io/v1alpha1/namespaces/ml/deviceattachments/" + grant->grant().grant_id()).ok());
}

TEST_F(KubeStoreTest, ConflictingStatusWritesAreRetried) {
  KubeStore store(client_.get(), &clock_);
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
  KubeStore store(client_.get(), &clock_);
  auto m = NewManager(&store);
  ASSERT_TRUE(m->RegisterAgent(AgentWith("dev-a", "emu", 1)).ok());
  ASSERT_TRUE(m->RegisterNode(NodeWith("cn-1", "emu")).ok());
  server_.InjectConflicts("/pciedevices/", 1000);
  m->Reconcile();  // assignment made in memory, store write fails
  EXPECT_EQ(m->AssignmentsFor("cn-1").assignments_size(), 1);
  server_.InjectConflicts("/pciedevices/", 0);
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
