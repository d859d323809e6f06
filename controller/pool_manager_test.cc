#include "controller/pool_manager.h"

#include <map>
#include <memory>
#include <random>

#include "common/testing/manual_clock.h"
#include "controller/local_store.h"
#include "controller/testing/registrations.h"
#include "gtest/gtest.h"

namespace rpci::controller {
namespace {

using testing::AgentWith;
using testing::ClaimOf;
using testing::MakeTempDir;
using testing::NodeWith;

PoolSpec Pool(const std::string& name, int spares, int idle_seconds = 0, int max_per_node = 0) {
  PoolSpec p;
  p.name = name;
  p.spares_per_node = spares;
  p.idle_release_seconds = idle_seconds;
  p.max_per_node = max_per_node;
  return p;
}

class PoolManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kWarn);
    dir_ = MakeTempDir("pool");
    Restart();
  }

  // Drops the manager and its store and opens both again from the directory,
  // as a restarted controller would.
  void Restart() {
    manager_.reset();
    store_.reset();
    auto store = LocalStore::Open(dir_, &clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    manager_ = std::make_unique<PoolManager>(store_.get(), &clock_, options_);
    ASSERT_TRUE(manager_->Load().ok());
  }

  std::map<std::string, std::string> AssignedTo() {
    std::map<std::string, std::string> out;
    for (const Device& d : manager_->Devices()) {
      if (!d.assigned_node.empty()) out[d.id()] = d.assigned_node;
    }
    return out;
  }

  // The setup most tests share: `pool` (named "emu") set, agent dev-a
  // exporting `devices` emu devices, compute nodes `nodes` (serving emu)
  // registered, one Reconcile. Returns the first device assigned to nodes[0]
  // ("" when none is).
  std::string AssignPool(const PoolSpec& pool, int devices, const std::vector<std::string>& nodes = {"cn-1"}) {
    manager_->SetPools({pool});
    EXPECT_TRUE(manager_->RegisterAgent(AgentWith("dev-a", "emu", devices)).ok());
    for (const std::string& node : nodes) EXPECT_TRUE(manager_->RegisterNode(NodeWith(node, "emu")).ok());
    manager_->Reconcile();
    for (const auto& [id, to] : AssignedTo()) {
      if (to == nodes[0]) return id;
    }
    return "";
  }

  // Ten seconds pass in which compute node `node` and device server
  // `server` heartbeat (the others stay silent); then one Reconcile.
  void HeartbeatsThenReconcile(const std::string& node, const std::string& server) {
    clock_.Advance(absl::Seconds(10));
    EXPECT_TRUE(manager_->NodeHeartbeat(node).ok());
    rpci::v1::AgentHeartbeatRequest hb;
    hb.set_node(server);
    EXPECT_TRUE(manager_->AgentHeartbeat(hb).ok());
    manager_->Reconcile();
  }

  int CountAssigned(const std::string& node) {
    int n = 0;
    for (const auto& [id, to] : AssignedTo()) n += to == node;
    return n;
  }

  ManualClock clock_;
  PoolManager::Options options_;
  std::string dir_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<PoolManager> manager_;
};

TEST_F(PoolManagerTest, KeepsConfiguredSparesOnEachComputeNode) {
  AssignPool(Pool("emu", 2), 5, {"cn-1", "cn-2"});
  EXPECT_EQ(CountAssigned("cn-1"), 2);
  EXPECT_EQ(CountAssigned("cn-2"), 2);
  // A second pass changes nothing.
  EXPECT_TRUE(manager_->Reconcile().empty());
  EXPECT_TRUE(manager_->CheckInvariants().ok());
}

TEST_F(PoolManagerTest, UnhealthyDeviceIsNeverNewlyAssigned) {
  manager_->SetPools({Pool("emu", 3)});
  auto agent = AgentWith("dev-a", "emu", 3);
  agent.mutable_devices(1)->set_health(rpci::v1::DEVICE_HEALTH_UNHEALTHY);
  ASSERT_TRUE(manager_->RegisterAgent(agent).ok());
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-1", "emu")).ok());
  manager_->Reconcile();
  auto assigned = AssignedTo();
  EXPECT_EQ(assigned.size(), 2u);
  EXPECT_EQ(assigned.count("dev-a-0000-3b-00-1"), 0u);
  auto d = manager_->GetDevice("dev-a-0000-3b-00-1");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->PhaseAt(clock_.Now()), DevicePhase::kUnhealthy);
}

TEST_F(PoolManagerTest, DeviceExportedByTwoAgentsIsRefused) {
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("dev-a", "emu", 1)).ok());
  auto other = AgentWith("dev-b", "emu", 1);
  other.mutable_devices(0)->set_id("dev-a-0000-3b-00-0");
  EXPECT_EQ(manager_->RegisterAgent(other).status().code(), absl::StatusCode::kAlreadyExists);
  auto wrong_node = AgentWith("dev-b", "emu", 1);
  wrong_node.mutable_devices(0)->set_node("dev-a");
  EXPECT_EQ(manager_->RegisterAgent(wrong_node).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PoolManagerTest, PendingUnschedulablePodCausesAssignmentOnce) {
  AssignPool(Pool("emu", 0), 4, {"cn-1", "cn-2"});
  EXPECT_TRUE(AssignedTo().empty());
  manager_->SetDemand({PodDemand{"default", "trainer", "emu", 2, ""}});
  auto decisions = manager_->Reconcile();
  ASSERT_EQ(decisions.size(), 2u);
  EXPECT_EQ(decisions[0].reason, "PendingPod");
  // Spread: one on each node.
  EXPECT_EQ(CountAssigned("cn-1"), 1);
  EXPECT_EQ(CountAssigned("cn-2"), 1);
  // The pod is still pending (kubelet has not advertised yet): no more.
  EXPECT_TRUE(manager_->Reconcile().empty());
  EXPECT_EQ(AssignedTo().size(), 2u);
}

TEST_F(PoolManagerTest, PodBoundToANodeGetsDevicesOnThatNode) {
  manager_->SetDemand({PodDemand{"default", "p", "emu", 5, "cn-2"}});
  AssignPool(Pool("emu", 0, 0, 3), 6, {"cn-1", "cn-2"});
  EXPECT_EQ(CountAssigned("cn-2"), 3);  // capped by maxPerNode
  EXPECT_EQ(CountAssigned("cn-1"), 0);
}

TEST_F(PoolManagerTest, IdleDeviceReturnsToPoolAfterIdleRelease) {
  options_.release_grace = absl::Seconds(10);
  Restart();
  manager_->SetDemand({PodDemand{"default", "p", "emu", 1, ""}});
  AssignPool(Pool("emu", 0, 60), 1);
  ASSERT_EQ(CountAssigned("cn-1"), 1);
  manager_->SetDemand({});  // the pod went away without using it
  clock_.Advance(absl::Seconds(59));
  ASSERT_TRUE(manager_->NodeHeartbeat("cn-1").ok());
  ASSERT_TRUE(manager_->AgentHeartbeat(rpci::v1::AgentHeartbeatRequest()).code() == absl::StatusCode::kNotFound);
  rpci::v1::AgentHeartbeatRequest hb;
  hb.set_node("dev-a");
  ASSERT_TRUE(manager_->AgentHeartbeat(hb).ok());
  manager_->Reconcile();
  EXPECT_EQ(CountAssigned("cn-1"), 1);
  clock_.Advance(absl::Seconds(2));
  auto decisions = manager_->Reconcile();
  ASSERT_EQ(decisions.size(), 1u);
  EXPECT_EQ(decisions[0].action, "release");
  EXPECT_EQ(decisions[0].reason, "IdleTimeout");
  auto d = manager_->GetDevice("dev-a-0000-3b-00-0");
  EXPECT_EQ(d->PhaseAt(clock_.Now()), DevicePhase::kReleasing);
  clock_.Advance(absl::Seconds(11));
  EXPECT_EQ(manager_->GetDevice("dev-a-0000-3b-00-0")->PhaseAt(clock_.Now()), DevicePhase::kAvailable);
}

// Issue 12: a device its agent reports as being scrubbed (reset and DMA
// space zeroed after its last session) stays Releasing past the release
// grace and is given to nobody until a report says it is clean.
TEST_F(PoolManagerTest, DeviceStaysReleasingWhileItsAgentReportsAScrub) {
  options_.release_grace = absl::Seconds(10);
  Restart();
  manager_->SetDemand({PodDemand{"default", "p", "emu", 1, ""}});
  const std::string id = AssignPool(Pool("emu", 0, 60), 1);
  ASSERT_FALSE(id.empty());
  manager_->SetDemand({});
  auto heartbeat = [&](bool scrubbing) {
    ASSERT_TRUE(manager_->NodeHeartbeat("cn-1").ok());
    rpci::v1::AgentHeartbeatRequest hb;
    hb.set_node("dev-a");
    rpci::v1::DeviceHealthReport* h = hb.add_health();
    h->set_device_id(id);
    h->set_health(rpci::v1::DEVICE_HEALTH_HEALTHY);
    h->set_scrubbing(scrubbing);
    ASSERT_TRUE(manager_->AgentHeartbeat(hb).ok());
  };
  clock_.Advance(absl::Seconds(61));
  heartbeat(false);
  manager_->Reconcile();  // idle release: Releasing for the grace
  ASSERT_EQ(CountAssigned("cn-1"), 0);
  heartbeat(true);
  clock_.Advance(absl::Seconds(11));  // the grace is over, the scrub is not
  heartbeat(true);
  manager_->SetDemand({PodDemand{"default", "q", "emu", 1, ""}});
  manager_->Reconcile();
  EXPECT_EQ(manager_->GetDevice(id)->PhaseAt(clock_.Now()), DevicePhase::kReleasing);
  EXPECT_EQ(manager_->GetDevice(id)->reason, "Scrubbing");
  EXPECT_EQ(CountAssigned("cn-1"), 0) << "a device being scrubbed was assigned";
  heartbeat(false);
  EXPECT_EQ(manager_->GetDevice(id)->PhaseAt(clock_.Now()), DevicePhase::kAvailable);
  manager_->Reconcile();
  EXPECT_EQ(CountAssigned("cn-1"), 1);
}

TEST_F(PoolManagerTest, AttachedDeviceIsNotReleasedForIdleness) {
  const std::string id = AssignPool(Pool("emu", 1, 30), 2);
  ASSERT_TRUE(manager_->Claim(ClaimOf("cn-1", id, "pod-a")).ok());
  manager_->Reconcile();  // refills the spare
  EXPECT_EQ(CountAssigned("cn-1"), 2);
  for (int i = 0; i < 10; ++i) {
    HeartbeatsThenReconcile("cn-1", "dev-a");
  }
  // The spare is wanted and the other is attached: both stay.
  EXPECT_EQ(CountAssigned("cn-1"), 2);
  EXPECT_EQ(manager_->GetDevice(id)->PhaseAt(clock_.Now()), DevicePhase::kAttached);
}

TEST_F(PoolManagerTest, ClaimOnlyForDevicesAssignedToTheNode) {
  const std::string on_cn1 = AssignPool(Pool("emu", 1), 2, {"cn-1", "cn-2"});
  EXPECT_EQ(manager_->Claim(ClaimOf("cn-2", on_cn1, "p")).status().code(), absl::StatusCode::kPermissionDenied);
  auto grant = manager_->Claim(ClaimOf("cn-1", on_cn1, "p"));
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->grant().token().size(), 32u);
  EXPECT_EQ(grant->agent_session_endpoint(), "dev-a:7443");
  // Same pod again: the same grant. Another pod: refused.
  auto again = manager_->Claim(ClaimOf("cn-1", on_cn1, "p"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->grant().grant_id(), grant->grant().grant_id());
  EXPECT_EQ(manager_->Claim(ClaimOf("cn-1", on_cn1, "q")).status().code(), absl::StatusCode::kFailedPrecondition);
  // The owning agent sees the grant.
  auto grants = manager_->GrantsFor("dev-a");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0].token(), grant->grant().token());
  rpci::v1::ReleaseRequest rel;
  rel.set_node("cn-1");
  rel.set_device_id(on_cn1);
  rel.set_grant_id(grant->grant().grant_id());
  ASSERT_TRUE(manager_->Release(rel).ok());
  EXPECT_TRUE(manager_->GrantsFor("dev-a").empty());
  EXPECT_TRUE(manager_->Release(rel).ok());  // idempotent
}

// Decision metrics are labelled with the controller's own reason codes:
// pod names and the words of agents and plugins go to the decision's detail
// (logs, events), so peers cannot grow the label set without bound.
TEST_F(PoolManagerTest, PeerTextIsDecisionDetailNeverAMetricLabel) {
  MetricsRegistry metrics;
  manager_ = std::make_unique<PoolManager>(store_.get(), &clock_, options_, &metrics);
  ASSERT_TRUE(manager_->Load().ok());
  const std::string device = AssignPool(Pool("emu", 1), 1);
  auto grant = manager_->Claim(ClaimOf("cn-1", device, "trainer-7f9c"));
  ASSERT_TRUE(grant.ok()) << grant.status();
  rpci::v1::ReleaseRequest rel;
  rel.set_node("cn-1");
  rel.set_device_id(device);
  rel.set_grant_id(grant->grant().grant_id());
  rel.set_reason("container exited 137 at 12:00:01");
  ASSERT_TRUE(manager_->Release(rel).ok());
  rpci::v1::AgentHeartbeatRequest beat;
  beat.set_node("dev-a");
  rpci::v1::DeviceHealthReport* h = beat.add_health();
  h->set_device_id(device);
  h->set_health(rpci::v1::DEVICE_HEALTH_UNHEALTHY);
  h->set_reason("link down on port 3 since 12:00:02");
  ASSERT_TRUE(manager_->AgentHeartbeat(beat).ok());

  std::map<std::string, std::string> detail_of;
  for (const Decision& d : manager_->TakeDecisions()) detail_of[d.action + "/" + d.reason] = d.detail;
  EXPECT_EQ(detail_of["attach/Claimed"], "by default/trainer-7f9c");
  EXPECT_EQ(detail_of["detach/ReleasedByPlugin"], "container exited 137 at 12:00:01");
  EXPECT_EQ(detail_of["unhealthy/ReportedByAgent"], "link down on port 3 since 12:00:02");
  const std::string text = metrics.Render();
  for (const char* free_text : {"trainer-7f9c", "exited", "link down"}) {
    EXPECT_EQ(text.find(free_text), std::string::npos) << free_text << " in a label:\n" << text;
  }
  for (const Device& d : manager_->Devices()) {
    if (d.id() == device) {
      EXPECT_EQ(d.health_reason, "link down on port 3 since 12:00:02");
    }
  }
}

TEST_F(PoolManagerTest, DeadComputeNodeDevicesAreReclaimed) {
  options_.node_lease = absl::Seconds(30);
  Restart();
  const std::string id = AssignPool(Pool("emu", 2), 4, {"cn-1", "cn-2"});
  ASSERT_TRUE(manager_->Claim(ClaimOf("cn-1", id, "p")).ok());
  // cn-1 stops heartbeating; cn-2 and the agent keep going.
  for (int i = 0; i < 4; ++i) {
    HeartbeatsThenReconcile("cn-2", "dev-a");
  }
  EXPECT_EQ(CountAssigned("cn-1"), 0);
  EXPECT_TRUE(manager_->Attachments().empty());
  EXPECT_TRUE(manager_->GrantsFor("dev-a").empty());
  EXPECT_EQ(manager_->NodeHeartbeat("cn-1").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager_->CheckInvariants().ok());
}

TEST_F(PoolManagerTest, DeletedNodeIsReclaimedAtOnce) {
  AssignPool(Pool("emu", 1), 1);
  ASSERT_EQ(CountAssigned("cn-1"), 1);
  manager_->NodeGone("cn-1");
  EXPECT_EQ(CountAssigned("cn-1"), 0);
  EXPECT_EQ(manager_->Devices()[0].PhaseAt(clock_.Now()), DevicePhase::kAvailable);
}

TEST_F(PoolManagerTest, DeadDeviceServerDevicesTurnUnhealthyAndUnassigned) {
  manager_->SetPools({Pool("emu", 1)});
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("dev-a", "emu", 1)).ok());
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("dev-b", "emu", 1)).ok());
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-1", "emu")).ok());
  manager_->Reconcile();
  std::string first = AssignedTo().begin()->first;
  std::string dead_server = manager_->GetDevice(first)->exported.node();
  std::string live_server = dead_server == "dev-a" ? "dev-b" : "dev-a";
  for (int i = 0; i < 4; ++i) {
    HeartbeatsThenReconcile("cn-1", live_server);
  }
  auto lost = manager_->GetDevice(first);
  EXPECT_FALSE(lost->healthy);
  EXPECT_TRUE(lost->assigned_node.empty());
  // The spare moved to the live server's device.
  auto assigned = AssignedTo();
  ASSERT_EQ(assigned.size(), 1u);
  EXPECT_EQ(manager_->GetDevice(assigned.begin()->first)->exported.node(), live_server);
  // The dead agent must register again before anything else.
  rpci::v1::AgentHeartbeatRequest hb;
  hb.set_node(dead_server);
  EXPECT_EQ(manager_->AgentHeartbeat(hb).code(), absl::StatusCode::kNotFound);
}

TEST_F(PoolManagerTest, DeviceRemovedWhileAttachedDrainsThenGoes) {
  const std::string id = AssignPool(Pool("emu", 1), 1);
  auto grant = manager_->Claim(ClaimOf("cn-1", id, "p"));
  ASSERT_TRUE(grant.ok());
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("dev-a", "emu", 0)).ok());
  EXPECT_EQ(manager_->GetDevice(id)->PhaseAt(clock_.Now()), DevicePhase::kDraining);
  rpci::v1::ReleaseRequest rel;
  rel.set_node("cn-1");
  rel.set_device_id(id);
  ASSERT_TRUE(manager_->Release(rel).ok());
  EXPECT_EQ(manager_->GetDevice(id).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PoolManagerTest, UsageReportDetachesPodsThatAreGone) {
  options_.usage_grace = absl::Seconds(5);
  Restart();
  const std::string id = AssignPool(Pool("emu", 1), 1);
  ASSERT_TRUE(manager_->Claim(ClaimOf("cn-1", id, "p")).ok());
  rpci::v1::ReportUsageRequest usage;
  usage.set_node("cn-1");
  ASSERT_TRUE(manager_->ReportUsage(usage).ok());  // within grace: kept
  EXPECT_EQ(manager_->Attachments().size(), 1u);
  clock_.Advance(absl::Seconds(6));
  ASSERT_TRUE(manager_->ReportUsage(usage).ok());
  EXPECT_TRUE(manager_->Attachments().empty());
  EXPECT_EQ(manager_->GetDevice(id)->PhaseAt(clock_.Now()), DevicePhase::kAssigned);
}

TEST_F(PoolManagerTest, RestartRebuildsFromStoreWithoutDoubleAssignment) {
  const std::string id = AssignPool(Pool("emu", 1), 3, {"cn-1", "cn-2"});
  auto grant = manager_->Claim(ClaimOf("cn-1", id, "p"));
  ASSERT_TRUE(grant.ok());
  manager_->Reconcile();  // cn-1 gets its spare back: all 3 assigned
  auto before = AssignedTo();
  ASSERT_EQ(before.size(), 3u);

  Restart();
  EXPECT_EQ(AssignedTo(), before);
  ASSERT_EQ(manager_->Attachments().size(), 1u);
  EXPECT_EQ(manager_->Attachments()[0].token, grant->grant().token());
  // Everyone re-registers; no device moves and none is assigned twice.
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("dev-a", "emu", 3)).ok());
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-1", "emu")).ok());
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-2", "emu")).ok());
  EXPECT_TRUE(manager_->Reconcile().empty());
  EXPECT_EQ(AssignedTo(), before);
  EXPECT_EQ(manager_->GrantsFor("dev-a").size(), 1u);
  EXPECT_TRUE(manager_->CheckInvariants().ok());
}

// The real store underneath, noting how many devices each commit carried.
class CommitRecorder : public Store {
 public:
  explicit CommitRecorder(Store* store) : store_(store) {}
  absl::StatusOr<StoreSnapshot> Load() override { return store_->Load(); }
  CommitOutcome Commit(const StoreBatch& batch) override {
    device_counts.push_back(batch.put_devices.size());
    return store_->Commit(batch);
  }
  std::vector<size_t> device_counts;

 private:
  Store* const store_;
};

TEST_F(PoolManagerTest, ChangesToManyDevicesAreCommittedInBoundedBatchesAndAllKept) {
  options_.max_batch_devices = 4;
  const int total = 10;
  CommitRecorder recorder(store_.get());
  manager_ = std::make_unique<PoolManager>(&recorder, &clock_, options_);
  ASSERT_TRUE(manager_->Load().ok());
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("dev-a", "emu", total)).ok());
  ASSERT_EQ(recorder.device_counts.size(), 3u);
  size_t committed = 0;
  for (size_t n : recorder.device_counts) {
    EXPECT_LE(n, options_.max_batch_devices);
    committed += n;
  }
  EXPECT_EQ(committed, static_cast<size_t>(total));
  Restart();
  EXPECT_EQ(manager_->Devices().size(), static_cast<size_t>(total));
}

TEST_F(PoolManagerTest, AdminDrainRefusesClaimsAndUnassignsOnceDetached) {
  AssignPool(Pool("emu", 1), 1);
  const std::string dev = "dev-a-0000-3b-00-0";
  ASSERT_TRUE(manager_->Claim(ClaimOf("cn-1", dev, "p1")).ok());
  manager_->SetDrainRequests({{dev, true}});
  manager_->Reconcile();
  // Still attached: the pod keeps it until it lets go.
  EXPECT_EQ(manager_->GetDevice(dev)->assigned_node, "cn-1");
  EXPECT_EQ(manager_->GetDevice(dev)->PhaseAt(clock_.Now()), DevicePhase::kDraining);
  EXPECT_EQ(manager_->Claim(ClaimOf("cn-1", dev, "p2")).status().code(), absl::StatusCode::kFailedPrecondition);
  rpci::v1::ReleaseRequest rel;
  rel.set_node("cn-1");
  rel.set_device_id(dev);
  ASSERT_TRUE(manager_->Release(rel).ok());
  manager_->Reconcile();
  EXPECT_EQ(manager_->GetDevice(dev)->assigned_node, "");
  // It survives a restart and is not handed out again while drained.
  Restart();
  AssignPool(Pool("emu", 1), 1);
  EXPECT_TRUE(manager_->GetDevice(dev)->drain_requested);
  EXPECT_EQ(CountAssigned("cn-1"), 0);
  manager_->SetDrainRequests({{dev, false}});
  clock_.Advance(options_.release_grace + absl::Seconds(1));
  manager_->Reconcile();
  EXPECT_EQ(CountAssigned("cn-1"), 1);
}

TEST_F(PoolManagerTest, DeletedAttachmentObjectDetaches) {
  AssignPool(Pool("emu", 1), 1);
  auto claim = manager_->Claim(ClaimOf("cn-1", "dev-a-0000-3b-00-0", "p1"));
  ASSERT_TRUE(claim.ok()) << claim.status();
  ASSERT_EQ(manager_->GrantsFor("dev-a").size(), 1u);
  ASSERT_TRUE(manager_->AttachmentDeleted(claim->grant().grant_id()).ok());
  EXPECT_TRUE(manager_->GrantsFor("dev-a").empty());
  EXPECT_TRUE(manager_->Attachments().empty());
  EXPECT_EQ(manager_->GetDevice("dev-a-0000-3b-00-0")->attachment, "");
  EXPECT_TRUE(manager_->AttachmentDeleted(claim->grant().grant_id()).ok());  // again: nothing to do
  EXPECT_TRUE(manager_->CheckInvariants().ok());
}

TEST_F(PoolManagerTest, NodeLabelsFeedSelectorsAndZoneLocality) {
  PoolSpec pool = Pool("emu", 1);
  pool.selector = {{"rpci.io/tier", "fast"}};
  pool.locality = Locality::kZone;
  manager_->SetPools({pool});
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("dev-a", "emu", 1)).ok());
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("dev-b", "emu", 1)).ok());
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-1", "emu")).ok());
  manager_->Reconcile();
  EXPECT_EQ(CountAssigned("cn-1"), 0) << "no device carries the selector's label yet";
  manager_->SetNodeLabels({{"dev-a", {{"rpci.io/tier", "fast"}, {"topology.kubernetes.io/zone", "z1"}}},
                           {"dev-b", {{"rpci.io/tier", "fast"}, {"topology.kubernetes.io/zone", "z2"}}},
                           {"cn-1", {{"topology.kubernetes.io/zone", "z2"}}}});
  manager_->Reconcile();
  EXPECT_EQ(AssignedTo(), (std::map<std::string, std::string>{{"dev-b-0000-3b-00-0", "cn-1"}}));
}

// 1 000 random operations with restarts in between; after each, the
// invariants hold and no unhealthy device was newly assigned.
TEST_F(PoolManagerTest, RandomOperationsWithRestartsKeepInvariants) {
  options_.node_lease = absl::Seconds(30);
  options_.agent_lease = absl::Seconds(30);
  options_.usage_grace = absl::Seconds(5);
  Restart();
  const std::vector<PoolSpec> pools = {Pool("emu", 1, 20, 3), Pool("gpu", 0, 40, 2)};
  manager_->SetPools(pools);
  std::mt19937 rng(20240501);
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  const std::vector<std::string> servers = {"dev-a", "dev-b", "dev-c"};
  const std::vector<std::string> nodes = {"cn-1", "cn-2", "cn-3", "cn-4"};
  std::map<std::string, std::set<std::string>> unhealthy_of;
  int claims = 0;
  int restarts = 0;
  for (int op = 0; op < 1000; ++op) {
    const std::string server = servers[pick(3)];
    const std::string node = nodes[pick(4)];
    const std::string pool = pick(2) ? "emu" : "gpu";
    switch (pick(10)) {
      case 0: {
        auto req = AgentWith(server, pool, pick(4));
        for (auto& d : *req.mutable_devices()) {
          if (pick(5) == 0) d.set_health(rpci::v1::DEVICE_HEALTH_UNHEALTHY);
        }
        (void)manager_->RegisterAgent(req);
        break;
      }
      case 1:
        (void)manager_->RegisterNode(NodeWith(node, pool));
        break;
      case 2: {
        auto assigned = AssignedTo();
        if (assigned.empty()) break;
        auto it = assigned.begin();
        std::advance(it, pick(static_cast<int>(assigned.size())));
        claims += manager_->Claim(ClaimOf(pick(4) ? it->second : node, it->first, "pod-" + std::to_string(op))).ok();
        break;
      }
      case 3: {
        auto atts = manager_->Attachments();
        if (atts.empty()) break;
        const Attachment& a = atts[pick(static_cast<int>(atts.size()))];
        rpci::v1::ReleaseRequest rel;
        rel.set_node(pick(4) ? a.node : node);
        rel.set_device_id(a.device_id);
        (void)manager_->Release(rel);
        break;
      }
      case 4: {
        rpci::v1::AgentHeartbeatRequest hb;
        hb.set_node(server);
        for (const Device& d : manager_->Devices()) {
          if (d.exported.node() == server && pick(6) == 0) {
            auto* h = hb.add_health();
            h->set_device_id(d.id());
            h->set_health(pick(2) ? rpci::v1::DEVICE_HEALTH_HEALTHY : rpci::v1::DEVICE_HEALTH_UNHEALTHY);
          }
        }
        (void)manager_->AgentHeartbeat(hb);
        break;
      }
      case 5:
        (void)manager_->NodeHeartbeat(node);
        break;
      case 6:
        manager_->SetDemand({PodDemand{"default", "p" + std::to_string(op), pool, pick(3), pick(2) ? node : ""}});
        break;
      case 7:
        clock_.Advance(absl::Seconds(1 + pick(15)));
        break;
      case 8: {
        rpci::v1::ReportUsageRequest usage;
        usage.set_node(node);
        (void)manager_->ReportUsage(usage);
        break;
      }
      case 9:
        if (pick(5) == 0) {
          Restart();
          manager_->SetPools(pools);
          ++restarts;
        }
        break;
    }
    std::set<std::string> unhealthy;
    for (const Device& d : manager_->Devices()) {
      if (!d.healthy) unhealthy.insert(d.id());
    }
    manager_->TakeDecisions();
    for (const Decision& dec : manager_->Reconcile()) {
      ASSERT_FALSE(dec.action == "assign" && unhealthy.count(dec.device_id))
          << "unhealthy device " << dec.device_id << " assigned at op " << op;
    }
    absl::Status inv = manager_->CheckInvariants();
    ASSERT_TRUE(inv.ok()) << "op " << op << ": " << inv;
    // The watch streams' views (read through indexes) agree with the state.
    for (const std::string& n : nodes) {
      std::set<std::string> listed, assigned;
      const rpci::v1::AssignmentSet set = manager_->AssignmentsFor(n);
      for (const auto& a : set.assignments()) listed.insert(a.device().id());
      for (const auto& [id, to] : AssignedTo()) {
        if (to == n) assigned.insert(id);
      }
      ASSERT_EQ(listed, assigned) << "op " << op << ", node " << n;
    }
    for (const std::string& sv : servers) {
      std::set<std::string> granted, attached;
      for (const auto& g : manager_->GrantsFor(sv)) granted.insert(g.grant_id());
      for (const Attachment& a : manager_->Attachments()) {
        if (manager_->GetDevice(a.device_id)->exported.node() == sv) attached.insert(a.grant_id);
      }
      ASSERT_EQ(granted, attached) << "op " << op << ", device server " << sv;
    }
  }
  EXPECT_GT(claims, 10);
  EXPECT_GT(restarts, 5);
}

}  // namespace
}  // namespace rpci::controller
