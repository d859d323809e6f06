// The controller's side of DRA: PrepareClaim/UnprepareClaim over gRPC, the
// ResourceClaim read from the test API server (resource.k8s.io as
// kube-apiserver serves it), state in the rpci.io CRDs.
#include <memory>

#include "common/testing/manual_clock.h"
#include "controller/claim_binder.h"
#include "controller/kube_store.h"
#include "controller/pool_manager.h"
#include "controller/resource_api.h"
#include "controller/resource_slices.h"
#include "controller/service.h"
#include "controller/testing/claims.h"
#include "controller/testing/installed_api_server.h"
#include "controller/testing/registrations.h"
#include "grpcpp/grpcpp.h"
#include "httplib.h"
#include "gtest/gtest.h"

namespace rpci::controller {
namespace {

using nlohmann::json;
using testing::AgentWith;
using testing::ClaimOn;
using testing::NodeWith;


PoolSpec Pool(const std::string& name, AllocationMode mode, int64_t spares = 0) {
  PoolSpec p;
  p.name = name;
  p.allocation_mode = mode;
  p.spares_per_node = spares;
  return p;
}

class DraTest : public testing::InstalledApiServerTest {
 protected:
  void SetUp() override {
    InstalledApiServerTest::SetUp();
    if (HasFatalFailure()) return;
    server_.CreateNamespace("ml");
    store_ = std::make_unique<KubeStore>(client_.get(), &clock_, kNs);
    resources_ = std::make_unique<ResourceApi>(client_.get());
    StartController();
    ASSERT_TRUE(manager_->RegisterAgent(AgentWith("ds-1", "gpu", 2)).ok());
    ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-1", "gpu")).ok());
  }

  void TearDown() override { StopController(); }

  // A controller (pool manager + NodeRegistry on loopback) over the store.
  void StartController() {
    options_.release_grace = absl::Seconds(10);
    manager_ = std::make_unique<PoolManager>(store_.get(), &clock_, options_);
    ASSERT_TRUE(manager_->Load().ok());
    manager_->SetPools({Pool("gpu", AllocationMode::kDra), Pool("both", AllocationMode::kBoth, 1),
                        Pool("dp", AllocationMode::kDevicePlugin)});
    service_ = std::make_unique<ControllerService>(
        manager_.get(), PeerAuthorizer(false), nullptr,
        [this](const std::string& node, const std::string& ns, const std::string& name, const std::string& uid) {
          return resources_->ReadClaim(node, ns, name, uid);
        });
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_->node_registry());
    grpc_ = builder.BuildAndStart();
    ASSERT_NE(grpc_, nullptr);
    nodes_ = rpci::v1::NodeRegistry::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials()));
  }

  void StopController() {
    if (!grpc_) return;
    service_->Shutdown();
    grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc_.reset();
  }

  // A ResourceClaim in "ml" allocated (as the scheduler writes it) to the
  // given (pool, device) pairs of driver rpci.io; returns its uid.
  std::string AllocatedClaim(const std::string& name, const std::vector<std::pair<std::string, std::string>>& devices,
                             const std::string& version = "v1") {
    std::vector<json> results;
    for (size_t i = 0; i < devices.size(); ++i) {
      results.push_back(testing::ClaimResult("r" + std::to_string(i), devices[i].first, devices[i].second));
    }
    json claim = testing::AllocatedClaim(name, results, version);
    json stored = server_.Put("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/" + name, claim);
    return stored["metadata"]["uid"];
  }

  grpc::Status Prepare(const std::string& node, const std::string& name, const std::string& uid,
                       rpci::v1::PrepareClaimResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return nodes_->PrepareClaim(&ctx, ClaimOn(node, "ml", name, uid), resp);
  }

  grpc::Status Unprepare(const std::string& node, const std::string& name, const std::string& uid) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    rpci::v1::UnprepareClaimResponse resp;
    return nodes_->UnprepareClaim(&ctx, ClaimOn(node, "ml", name, uid), &resp);
  }

  static std::string DeviceId(int i) { return "ds-1-0000-3b-00-" + std::to_string(i); }

  ManualClock clock_;
  PoolManager::Options options_;
  std::unique_ptr<KubeStore> store_;
  std::unique_ptr<ResourceApi> resources_;
  std::unique_ptr<PoolManager> manager_;
  std::unique_ptr<ControllerService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<rpci::v1::NodeRegistry::Stub> nodes_;
  int port_ = 0;
};

TEST_F(DraTest, PrepareClaimGrantsTheAllocatedDeviceToTheNodeAndRepeatsTheSameGrant) {
  const std::string uid = AllocatedClaim("c1", {{"gpu", DeviceId(1)}});
  rpci::v1::PrepareClaimResponse first, again;
  grpc::Status s = Prepare("cn-1", "c1", uid, &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(first.devices_size(), 1);
  const rpci::v1::PreparedDevice& d = first.devices(0);
  EXPECT_EQ(d.request(), "r0");
  EXPECT_EQ(d.pool(), "gpu");
  EXPECT_EQ(d.device(), DeviceId(1));
  EXPECT_EQ(d.grant().device_id(), DeviceId(1));
  EXPECT_EQ(d.grant().compute_node(), "cn-1");
  EXPECT_EQ(d.grant().token().size(), 32u);
  EXPECT_EQ(d.agent_session_endpoint(), "ds-1:7443");
  EXPECT_EQ(d.exported().id(), DeviceId(1));
  // The agent is told; the device plugin's view of the node does not list it.
  std::vector<rpci::v1::SessionGrant> grants = manager_->GrantsFor("ds-1");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0].grant_id(), d.grant().grant_id());
  EXPECT_EQ(manager_->AssignmentsFor("cn-1").assignments_size(), 0);
  // Again (the kubelet retries): the same grant, not a second one.
  ASSERT_TRUE(Prepare("cn-1", "c1", uid, &again).ok());
  ASSERT_EQ(again.devices_size(), 1);
  EXPECT_EQ(again.devices(0).grant().grant_id(), d.grant().grant_id());
  EXPECT_EQ(again.devices(0).grant().token(), d.grant().token());
  EXPECT_EQ(manager_->Attachments().size(), 1u);
  // The DeviceAttachment names the claim.
  absl::StatusOr<json> attachment =
      server_.Get(std::string("/apis/rpci.io/v1alpha1/namespaces/") + kNs + "/deviceattachments/" + d.grant().grant_id());
  ASSERT_TRUE(attachment.ok());
  EXPECT_EQ((*attachment)["spec"]["claim"],
            json({{"uid", uid}, {"namespace", "ml"}, {"name", "c1"}, {"request", "r0"}}));
  EXPECT_TRUE(manager_->CheckInvariants().ok());
}

TEST_F(DraTest, UnprepareClaimRevokesTheGrantAndTheDeviceIsOfferedAgainOnlyAfterItsScrubGrace) {
  const std::string uid = AllocatedClaim("c1", {{"gpu", DeviceId(0)}});
  rpci::v1::PrepareClaimResponse resp;
  ASSERT_TRUE(Prepare("cn-1", "c1", uid, &resp).ok());
  auto offered = [&] {
    const auto offer = manager_->DraOffer();
    for (const auto& d : offer.at("gpu")) {
      if (d.id() == DeviceId(0)) return true;
    }
    return false;
  };
  EXPECT_FALSE(offered());
  ASSERT_TRUE(Unprepare("cn-1", "c1", uid).ok());
  EXPECT_TRUE(manager_->GrantsFor("ds-1").empty());  // the agent tears the session down and scrubs
  EXPECT_EQ(manager_->GetDevice(DeviceId(0))->PhaseAt(clock_.Now()), DevicePhase::kReleasing);
  EXPECT_FALSE(offered());
  rpci::v1::PrepareClaimResponse refused;
  const std::string uid2 = AllocatedClaim("c2", {{"gpu", DeviceId(0)}});
  grpc::Status s = Prepare("cn-1", "c2", uid2, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("releasing"), std::string::npos) << s.error_message();
  clock_.Advance(absl::Seconds(11));
  EXPECT_TRUE(offered());
  EXPECT_TRUE(Prepare("cn-1", "c2", uid2, &refused).ok());
  // Unpreparing again, or a claim never prepared, is OK.
  EXPECT_TRUE(Unprepare("cn-1", "c1", uid).ok());
  EXPECT_TRUE(Unprepare("cn-1", "nope", "uid-nope").ok());
}

TEST_F(DraTest, PrepareClaimRefusesADeviceAnotherClaimHolds) {
  rpci::v1::PrepareClaimResponse resp;
  ASSERT_TRUE(Prepare("cn-1", "c1", AllocatedClaim("c1", {{"gpu", DeviceId(1)}}), &resp).ok());
  grpc::Status s = Prepare("cn-1", "c2", AllocatedClaim("c2", {{"gpu", DeviceId(0)}, {"gpu", DeviceId(1)}}), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("held by ResourceClaim ml/c1"), std::string::npos) << s.error_message();
  // All or nothing: device 0 was not taken for c2.
  EXPECT_EQ(manager_->GetDevice(DeviceId(0))->assigned_node, "");
  EXPECT_EQ(manager_->Attachments().size(), 1u);
}

TEST_F(DraTest, OneSetOfGrantsBetweenTheDevicePluginAndClaims) {
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("ds-2", "both", 2)).ok());
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-2", "both")).ok());
  manager_->Reconcile();  // one spare for the device plugin on cn-2
  rpci::v1::AssignmentSet set = manager_->AssignmentsFor("cn-2");
  ASSERT_EQ(set.assignments_size(), 1);
  const std::string spare = set.assignments(0).device().id();
  const std::string other = spare == "ds-2-0000-3b-00-0" ? "ds-2-0000-3b-00-1" : "ds-2-0000-3b-00-0";
  // The slice offers only the device placement did not take...
  ASSERT_EQ(manager_->DraOffer()["both"].size(), 1u);
  EXPECT_EQ(manager_->DraOffer()["both"][0].id(), other);
  // ...and a claim allocated the spare anyway (a stale slice) is refused.
  rpci::v1::PrepareClaimResponse resp;
  grpc::Status s = Prepare("cn-1", "c1", AllocatedClaim("c1", {{"both", spare}}), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("held by the device plugin on node cn-2"), std::string::npos) << s.error_message();
  // A claim's device is neither placed by the device plugin nor claimable through it.
  ASSERT_TRUE(Prepare("cn-2", "c2", AllocatedClaim("c2", {{"both", other}}), &resp).ok());
  manager_->Reconcile();
  EXPECT_EQ(manager_->AssignmentsFor("cn-2").assignments_size(), 1);
  rpci::v1::ClaimRequest claim;
  claim.set_node("cn-2");
  claim.set_device_id(other);
  claim.set_pod_name("allocation-1");
  absl::StatusOr<rpci::v1::ClaimResponse> plugin_claim = manager_->Claim(claim);
  EXPECT_EQ(plugin_claim.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(plugin_claim.status().message().find("ResourceClaim ml/c2"), std::string::npos);
  // Usage reports (the device plugin's pods) do not end a claim's grant.
  clock_.Advance(absl::Minutes(5));
  rpci::v1::ReportUsageRequest usage;
  usage.set_node("cn-2");
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-2", "both")).ok());
  ASSERT_TRUE(manager_->ReportUsage(usage).ok());
  EXPECT_EQ(manager_->GrantsFor("ds-2").size(), 1u);
  EXPECT_TRUE(manager_->CheckInvariants().ok());
}

TEST_F(DraTest, PlacementLeavesADeviceTheSchedulerAllocatedInABothPool) {
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("ds-2", "both", 2)).ok());
  // The claims informer's view: device 0 is allocated, not yet prepared.
  std::map<std::string, json> claims = {
      {"ml/c1", json::parse(R"({"status": {"allocation": {"devices": {"results": [
          {"request": "r", "driver": "rpci.io", "pool": "both", "device": "ds-2-0000-3b-00-0"},
          {"request": "r", "driver": "gpu.example.com", "pool": "both", "device": "ds-2-0000-3b-00-1"}]}}}})")}};
  manager_->SetClaimAllocations(RpciAllocations(claims));
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-2", "both")).ok());
  manager_->Reconcile();  // one spare for cn-2's device plugin
  EXPECT_EQ(manager_->GetDevice("ds-2-0000-3b-00-0")->assigned_node, "");
  EXPECT_EQ(manager_->GetDevice("ds-2-0000-3b-00-1")->assigned_node, "cn-2");
  rpci::v1::PrepareClaimResponse resp;
  EXPECT_TRUE(Prepare("cn-2", "c1", AllocatedClaim("c1", {{"both", "ds-2-0000-3b-00-0"}}), &resp).ok());
}

TEST_F(DraTest, PrepareClaimRefusesDevicesOutsideDraPools) {
  rpci::v1::PrepareClaimResponse resp;
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("ds-3", "dp", 1)).ok());
  grpc::Status s = Prepare("cn-1", "c1", AllocatedClaim("c1", {{"dp", "ds-3-0000-3b-00-0"}}), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("pool dp is not DRA-enabled"), std::string::npos) << s.error_message();
  s = Prepare("cn-1", "c2", AllocatedClaim("c2", {{"gpu", "ds-3-0000-3b-00-0"}}), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("pool gpu has no device ds-3-0000-3b-00-0"), std::string::npos)
      << s.error_message();
  // Another driver's results are not rpci's to prepare.
  json other = *server_.Get("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c2");
  other["status"]["allocation"]["devices"]["results"][0]["driver"] = "gpu.example.com";
  server_.Put("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c2", other);
  s = Prepare("cn-1", "c2", other["metadata"]["uid"], &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("allocates no device of driver rpci.io"), std::string::npos) << s.error_message();
  EXPECT_TRUE(manager_->Attachments().empty());
}

TEST_F(DraTest, PrepareClaimChecksTheClaimItReads) {
  rpci::v1::PrepareClaimResponse resp;
  const std::string uid = AllocatedClaim("c1", {{"gpu", DeviceId(0)}});
  grpc::Status s = Prepare("cn-1", "c1", "uid-of-an-older-c1", &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("deleted and created again"), std::string::npos) << s.error_message();
  EXPECT_EQ(Prepare("cn-1", "absent", "u", &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  // A node that never registered (no lease, so nothing would ever release
  // what it holds) cannot prepare.
  s = Prepare("cn-9", "c1", uid, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("call RegisterNode"), std::string::npos) << s.error_message();
  json pending = *server_.Get("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1");
  pending.erase("status");
  server_.Put("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1", pending);
  s = Prepare("cn-1", "c1", uid, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("is not allocated"), std::string::npos) << s.error_message();
}

TEST_F(DraTest, ANodeCannotPrepareAClaimAllocatedForAnother) {
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-2", "gpu")).ok());
  const std::string uid = AllocatedClaim("c1", {{"gpu", DeviceId(0)}});
  json allocated = *server_.Get("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1");
  // As the scheduler writes it from our slice: the nodes the slice reaches.
  allocated["status"]["allocation"]["nodeSelector"] = json::parse(R"({"nodeSelectorTerms": [{"matchFields": [
      {"key": "metadata.name", "operator": "In", "values": ["cn-1"]}]}]})");
  server_.Put("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1", allocated);
  rpci::v1::PrepareClaimResponse resp;
  grpc::Status s = Prepare("cn-2", "c1", uid, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("allocated for other nodes"), std::string::npos) << s.error_message();
  EXPECT_TRUE(manager_->Attachments().empty());
  ASSERT_TRUE(Prepare("cn-1", "c1", uid, &resp).ok());
  // Another driver's label requirement in the same term is not rpci's to judge.
  EXPECT_TRUE(CheckAllocationNode(json::parse(R"({"status": {"allocation": {"nodeSelector": {"nodeSelectorTerms": [
      {"matchExpressions": [{"key": "gpu.example.com/rack", "operator": "In", "values": ["r1"]},
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["cn-2"]}]}]}}}})"),
                                  "cn-2").ok());
}

TEST_F(DraTest, PreparedClaimSurvivesAControllerRestart) {
  const std::string uid = AllocatedClaim("c1", {{"gpu", DeviceId(1)}});
  rpci::v1::PrepareClaimResponse before, after;
  ASSERT_TRUE(Prepare("cn-1", "c1", uid, &before).ok());
  StopController();
  StartController();  // a new pool manager loads the CRDs
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("ds-1", "gpu", 2)).ok());
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-1", "gpu")).ok());
  grpc::Status s = Prepare("cn-1", "c1", uid, &after);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(after.devices_size(), 1);
  EXPECT_EQ(after.devices(0).grant().grant_id(), before.devices(0).grant().grant_id());
  EXPECT_EQ(after.devices(0).grant().token(), before.devices(0).grant().token());
  EXPECT_EQ(after.devices(0).request(), "r0");
  // Another node cannot prepare or unprepare it.
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-2", "gpu")).ok());
  EXPECT_EQ(Prepare("cn-2", "c1", uid, &after).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Unprepare("cn-2", "c1", uid).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(Unprepare("cn-1", "c1", uid).ok());
  EXPECT_TRUE(manager_->Attachments().empty());
}

TEST_F(DraTest, ClaimsAreReadInTheVersionDiscoveryChooses) {
  {
    ResourceApi api(client_.get());
    EXPECT_EQ(*api.Version(), "v1");
  }
  server_.ServeResourceVersions({"v1beta1"});  // Kubernetes 1.32
  resources_ = std::make_unique<ResourceApi>(client_.get());
  EXPECT_EQ(*resources_->Version(), "v1beta1");
  rpci::v1::PrepareClaimResponse resp;
  grpc::Status s = Prepare("cn-1", "c1", AllocatedClaim("c1", {{"gpu", DeviceId(0)}}), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.devices(0).device(), DeviceId(0));
  server_.ServeResourceVersions({});  // no DRA
  ResourceApi none(client_.get());
  EXPECT_EQ(none.Version().status().code(), absl::StatusCode::kNotFound);
}

// ---- ResourceSlices ----

json Slices(kubetest::ApiServer& server, const std::string& version) {
  httplib::Client http(server.url().substr(server.url().find("//") + 2).c_str());
  httplib::Result r = http.Get(("/apis/resource.k8s.io/" + version + "/resourceslices").c_str());
  return r ? json::parse(r->body, nullptr, false)["items"] : json();
}

TEST_F(DraTest, SlicesListTheFreeDevicesOfEachDraPoolForTheNodesServingIt) {
  rpci::v1::RegisterAgentRequest agent = AgentWith("ds-1", "gpu", 2);
  rpci::v1::PcieFunction* f = agent.mutable_devices(0)->mutable_function();
  f->set_vendor_id(0x10de);
  f->set_device_id(0x20b0);
  f->set_class_code(0x030200);
  f->set_vendor_name("NVIDIA Corporation");
  rpci::v1::Bar* bar = f->add_bars();
  bar->set_index(0);
  bar->set_size(16 << 20);
  agent.mutable_devices(0)->add_local_nics("mlx5_0");
  agent.mutable_devices(0)->set_dma_size(1 << 20);
  (*agent.mutable_devices(0)->mutable_labels())["topology.kubernetes.io/zone"] = "z1";
  ASSERT_TRUE(manager_->RegisterAgent(agent).ok());
  ASSERT_TRUE(manager_->RegisterAgent(AgentWith("ds-2", "dp", 1)).ok());  // not a DRA pool
  server_.Put("/apis/resource.k8s.io/v1/resourceslices/other",
              {{"spec", {{"driver", "gpu.example.com"}, {"pool", {{"name", "gpu"}, {"resourceSliceCount", 1}}},
                         {"allNodes", true}}}});
  SlicePublisher publisher(client_.get(), resources_.get());
  ASSERT_TRUE(publisher.Sync(DraOffers(*manager_, {{"gpu", "uid-pool-gpu"}})).ok());
  json slices = Slices(server_, "v1");
  ASSERT_EQ(slices.size(), 2u) << slices.dump();
  json slice = slices[1]["metadata"]["name"] == "rpci-gpu-0" ? slices[1] : slices[0];
  EXPECT_EQ(slice["metadata"]["labels"]["app.kubernetes.io/managed-by"], "rpci-controller");
  EXPECT_EQ(slice["metadata"]["ownerReferences"][0]["kind"], "DevicePool");
  EXPECT_EQ(slice["metadata"]["ownerReferences"][0]["uid"], "uid-pool-gpu");
  EXPECT_EQ(slice["spec"]["driver"], "rpci.io");
  EXPECT_EQ(slice["spec"]["pool"], json::parse(R"({"name": "gpu", "generation": 1, "resourceSliceCount": 1})"));
  EXPECT_EQ(slice["spec"]["nodeSelector"], json::parse(R"({"nodeSelectorTerms": [{"matchFields": [
      {"key": "metadata.name", "operator": "In", "values": ["cn-1"]}]}]})"));
  ASSERT_EQ(slice["spec"]["devices"].size(), 2u);
  const json& d0 = slice["spec"]["devices"][0];
  EXPECT_EQ(d0["name"], DeviceId(0));
  EXPECT_EQ(d0["attributes"]["vendorId"], json({{"int", 0x10de}}));
  EXPECT_EQ(d0["attributes"]["classCode"], json({{"int", 0x030200}}));
  EXPECT_EQ(d0["attributes"]["vendorName"], json({{"string", "NVIDIA Corporation"}}));
  EXPECT_EQ(d0["attributes"]["deviceServer"], json({{"string", "ds-1"}}));
  EXPECT_EQ(d0["attributes"]["pool"], json({{"string", "gpu"}}));
  EXPECT_EQ(d0["attributes"]["localNics"], json({{"string", "mlx5_0"}}));
  EXPECT_EQ(d0["attributes"]["rdmaLocal"], json({{"bool", true}}));
  EXPECT_EQ(d0["attributes"]["zone"], json({{"string", "z1"}}));
  EXPECT_EQ(d0["capacity"]["bar0"], json({{"value", "16777216"}}));
  EXPECT_EQ(d0["capacity"]["dma"], json({{"value", "1048576"}}));
  EXPECT_FALSE(slice["spec"]["devices"][1].contains("capacity")) << "no BAR, DMA size unknown";
  EXPECT_EQ(slice["spec"]["devices"][1]["attributes"]["rdmaLocal"], json({{"bool", false}}));

  // A prepared device leaves the slice; the pool's generation goes up.
  rpci::v1::PrepareClaimResponse resp;
  ASSERT_TRUE(Prepare("cn-1", "c1", AllocatedClaim("c1", {{"gpu", DeviceId(0)}}), &resp).ok());
  ASSERT_TRUE(publisher.Sync(DraOffers(*manager_, {{"gpu", "uid-pool-gpu"}})).ok());
  slice = *server_.Get("/apis/resource.k8s.io/v1/resourceslices/rpci-gpu-0");
  EXPECT_EQ(slice["spec"]["pool"]["generation"], 2);
  ASSERT_EQ(slice["spec"]["devices"].size(), 1u);
  EXPECT_EQ(slice["spec"]["devices"][0]["name"], DeviceId(1));
  // Nothing changed: nothing written.
  const std::string rv = slice["metadata"]["resourceVersion"];
  ASSERT_TRUE(publisher.Sync(DraOffers(*manager_, {{"gpu", "uid-pool-gpu"}})).ok());
  EXPECT_EQ((*server_.Get("/apis/resource.k8s.io/v1/resourceslices/rpci-gpu-0"))["metadata"]["resourceVersion"], rv);
  // A second node serving the pool joins the selector.
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-2", "gpu")).ok());
  ASSERT_TRUE(publisher.Sync(DraOffers(*manager_, {{"gpu", "uid-pool-gpu"}})).ok());
  slice = *server_.Get("/apis/resource.k8s.io/v1/resourceslices/rpci-gpu-0");
  EXPECT_EQ(slice["spec"]["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"], json({"cn-1", "cn-2"}));
  EXPECT_EQ(slice["spec"]["pool"]["generation"], 3);
  // The pool goes (or stops being DRA-enabled): its slices go; others' stay.
  manager_->SetPools({Pool("gpu", AllocationMode::kDevicePlugin)});
  ASSERT_TRUE(publisher.Sync(DraOffers(*manager_, {})).ok());
  slices = Slices(server_, "v1");
  ASSERT_EQ(slices.size(), 1u);
  EXPECT_EQ(slices[0]["metadata"]["name"], "other");
}

TEST_F(DraTest, SlicesUseV1beta1ShapesWhenTheClusterServesOnlyV1beta1) {
  server_.ServeResourceVersions({"v1beta1"});
  resources_ = std::make_unique<ResourceApi>(client_.get());
  SlicePublisher publisher(client_.get(), resources_.get());
  ASSERT_TRUE(publisher.Sync(DraOffers(*manager_, {})).ok());
  json slices = Slices(server_, "v1beta1");
  ASSERT_EQ(slices.size(), 1u);
  EXPECT_EQ(slices[0]["spec"]["devices"][0]["basic"]["attributes"]["pool"], json({{"string", "gpu"}}));
  // Stored as kube-apiserver would: the same device in v1's shape, nothing
  // dropped by the conversion.
  server_.ServeResourceVersions({"v1", "v1beta1"});
  json v1 = *server_.Get("/apis/resource.k8s.io/v1/resourceslices/rpci-gpu-0");
  EXPECT_EQ(v1["spec"]["devices"][0]["attributes"]["pool"], json({{"string", "gpu"}}));
  EXPECT_FALSE(v1["spec"]["devices"][0].contains("basic"));
}

TEST_F(DraTest, APoolOfMoreThan128DevicesSpansSlicesOfOneGeneration) {
  rpci::v1::RegisterAgentRequest big = AgentWith("ds-big", "gpu", 130);
  for (int i = 0; i < 130; ++i) {  // valid PCIe addresses, as a real agent's
    char bdf[16];
    snprintf(bdf, sizeof(bdf), "0000:%02x:%02x.%d", 0x40 + i / 32, i % 32, 0);
    big.mutable_devices(i)->mutable_function()->set_bdf(bdf);
  }
  ASSERT_TRUE(manager_->RegisterAgent(big).ok());
  SlicePublisher publisher(client_.get(), resources_.get());
  ASSERT_TRUE(publisher.Sync(DraOffers(*manager_, {})).ok());
  json slices = Slices(server_, "v1");
  ASSERT_EQ(slices.size(), 2u);
  size_t devices = 0;
  for (const json& s : slices) {
    EXPECT_EQ(s["spec"]["pool"]["resourceSliceCount"], 2);
    EXPECT_EQ(s["spec"]["pool"]["generation"], 1);
    devices += s["spec"]["devices"].size();
  }
  EXPECT_EQ(devices, 132u);  // ds-1's 2 and ds-big's 130
}

TEST_F(DraTest, DeviceNamesInSlicesAreDnsLabels) {
  EXPECT_EQ(DraDeviceName("ds-1-0000-3b-00-0"), "ds-1-0000-3b-00-0");
  const std::string odd = DraDeviceName("Node.Example_COM-0000:3b:00.0");
  EXPECT_EQ(odd.substr(0, 30), "node-example-com-0000-3b-00-0-");
  EXPECT_EQ(odd.size(), 38u);
  EXPECT_NE(DraDeviceName("Node.Example_COM-0000:3b:00.0"), DraDeviceName("node.example_com-0000:3b:00.0"));
  EXPECT_LE(DraDeviceName(std::string(100, 'a') + ".x").size(), 63u);
}

// ---- binding conditions (KEP-5007) ----

TEST_F(DraTest, WithBindingConditionsV1SlicesAskTheSchedulerToWaitForTheAttach) {
  PoolOffer offer{manager_->DraOffer()["gpu"], {"cn-1"}, ""};
  json device = PoolSlices("gpu", offer, "v1", 1, true)[0]["spec"]["devices"][0];
  EXPECT_EQ(device["bindingConditions"], json({"rpci.io/Attached"}));
  EXPECT_EQ(device["bindingFailureConditions"], json({"rpci.io/AttachFailed"}));
  EXPECT_EQ(device["bindsToNode"], true);
  EXPECT_FALSE(PoolSlices("gpu", offer, "v1", 1, false)[0]["spec"]["devices"][0].contains("bindingConditions"));
  // v1beta1 clusters do not get them (the gates are v1-era alpha).
  EXPECT_FALSE(PoolSlices("gpu", offer, "v1beta1", 1, true)[0]["spec"]["devices"][0]["basic"].contains("bindingConditions"));
  // The API server takes such a slice.
  SlicePublisher publisher(client_.get(), resources_.get(), true);
  ASSERT_TRUE(publisher.Sync(DraOffers(*manager_, {})).ok());
  EXPECT_EQ((*server_.Get("/apis/resource.k8s.io/v1/resourceslices/rpci-gpu-0"))["spec"]["devices"][0]["bindsToNode"], true);
}

// A claim as the scheduler allocates it from a slice with binding
// conditions: the results carry copies of them and bindsToNode pins the
// allocation to the chosen node.
std::string BoundClaim(kubetest::ApiServer& server, const std::string& name, const std::string& device,
                       const std::string& node) {
  json claim = {{"apiVersion", "resource.k8s.io/v1"},
                {"kind", "ResourceClaim"},
                {"metadata", {{"name", name}}},
                {"spec", json::object()},
                {"status",
                 {{"allocation",
                   {{"devices",
                     {{"results",
                       {{{"request", "gpu"}, {"driver", "rpci.io"}, {"pool", "gpu"}, {"device", device},
                         {"bindingConditions", {"rpci.io/Attached"}},
                         {"bindingFailureConditions", {"rpci.io/AttachFailed"}}}}}}},
                    {"nodeSelector",
                     {{"nodeSelectorTerms",
                       {{{"matchFields", {{{"key", "metadata.name"}, {"operator", "In"}, {"values", {node}}}}}}}}}}}}}}};
  return server.Put("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/" + name, claim)["metadata"]["uid"];
}

// Every ResourceClaim, as the controller's informer caches them.
std::map<std::string, json> AllClaims(kube::KubeClient& client) {
  std::map<std::string, json> out;
  absl::StatusOr<json> list = client.Get("/apis/resource.k8s.io/v1/resourceclaims");
  for (const json& c : list.ok() ? (*list)["items"] : json::array()) {
    out[c["metadata"].value("namespace", "") + "/" + c["metadata"].value("name", "")] = c;
  }
  return out;
}

json DeviceConditions(kubetest::ApiServer& server, const std::string& name) {
  json claim = *server.Get("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/" + name);
  return claim["status"].value("devices", json::array());
}

TEST_F(DraTest, TheBinderAttachesABoundClaimBeforeTheKubeletPreparesIt) {
  const std::string uid = BoundClaim(server_, "c1", DeviceId(0), "cn-1");
  ClaimBinder binder(client_.get(), resources_.get(), manager_.get(), &clock_);
  ASSERT_TRUE(binder.Sync(AllClaims(*client_)).ok());
  json devices = DeviceConditions(server_, "c1");
  ASSERT_EQ(devices.size(), 1u) << devices.dump();
  EXPECT_EQ(devices[0]["driver"], "rpci.io");
  EXPECT_EQ(devices[0]["device"], DeviceId(0));
  EXPECT_EQ(devices[0]["conditions"][0]["type"], "rpci.io/Attached");
  EXPECT_EQ(devices[0]["conditions"][0]["status"], "True");
  std::vector<rpci::v1::SessionGrant> grants = manager_->GrantsFor("ds-1");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0].compute_node(), "cn-1");
  // The kubelet's prepare gets the grant the binder made; passes change nothing.
  rpci::v1::PrepareClaimResponse resp;
  ASSERT_TRUE(Prepare("cn-1", "c1", uid, &resp).ok());
  EXPECT_EQ(resp.devices(0).grant().grant_id(), grants[0].grant_id());
  ASSERT_TRUE(binder.Sync(AllClaims(*client_)).ok());
  EXPECT_EQ(manager_->Attachments().size(), 1u);
  // A young grant whose claim the informer does not show (yet) is left alone.
  const std::string late = AllocatedClaim("c-late", {{"gpu", DeviceId(1)}});
  ASSERT_TRUE(Prepare("cn-1", "c-late", late, &resp).ok());
  server_.Delete("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c-late");
  ASSERT_TRUE(binder.Sync(AllClaims(*client_)).ok());
  EXPECT_EQ(manager_->Attachments().size(), 2u);
  // The claim is deleted before anyone unprepares it: its grant goes (and
  // c-late's, a minute on).
  clock_.Advance(ClaimBinder::kGoneGrace + absl::Seconds(1));
  server_.Delete("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1");
  ASSERT_TRUE(binder.Sync(AllClaims(*client_)).ok());
  EXPECT_TRUE(manager_->Attachments().empty());
}

TEST_F(DraTest, TheBinderReportsARefusedAttachAsTheFailureCondition) {
  rpci::v1::PrepareClaimResponse resp;
  ASSERT_TRUE(Prepare("cn-1", "c0", AllocatedClaim("c0", {{"gpu", DeviceId(1)}}), &resp).ok());
  BoundClaim(server_, "c1", DeviceId(1), "cn-1");  // a stale slice: the device is held
  ClaimBinder binder(client_.get(), resources_.get(), manager_.get(), &clock_);
  ASSERT_TRUE(binder.Sync(AllClaims(*client_)).ok());
  json devices = DeviceConditions(server_, "c1");
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0]["conditions"][0]["type"], "rpci.io/AttachFailed");
  EXPECT_NE(devices[0]["conditions"][0]["message"].get<std::string>().find("held by ResourceClaim ml/c0"),
            std::string::npos);
  // A node whose plugin has not registered yet: no condition, tried again.
  BoundClaim(server_, "c2", DeviceId(0), "cn-late");
  EXPECT_FALSE(binder.Sync(AllClaims(*client_)).ok());
  EXPECT_TRUE(DeviceConditions(server_, "c2").empty());
  ASSERT_TRUE(manager_->RegisterNode(NodeWith("cn-late", "gpu")).ok());
  ASSERT_TRUE(binder.Sync(AllClaims(*client_)).ok());
  EXPECT_EQ(DeviceConditions(server_, "c2")[0]["conditions"][0]["type"], "rpci.io/Attached");
}

}  // namespace
}  // namespace rpci::controller
