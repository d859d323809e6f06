#include "controller/controller_app.h"

#include <chrono>
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/testing/exposition_format.h"
#include "controller/kube_store.h"
#include "controller/testing/claims.h"
#include "controller/testing/installed_api_server.h"
#include "controller/testing/kube_options.h"
#include "controller/testing/registrations.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "proto/rpci/v1/controller.grpc.pb.h"

namespace rpci::controller {
namespace {

using nlohmann::json;
using testing::WaitFor;
using testing::AgentWith;
using testing::AllocatedClaim;
using testing::ClaimOn;
using testing::ClaimResult;
using testing::ClaimOf;
using testing::KubeStoreOptions;
using testing::MakeTempDir;
using testing::NodeWith;
namespace testing_prom = ::rpci::testing;

// gRPC stubs for one controller replica, as an agent and a plugin see it.
struct Peer {
  explicit Peer(int port) {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    agents = rpci::v1::AgentRegistry::NewStub(channel);
    nodes = rpci::v1::NodeRegistry::NewStub(channel);
  }
  grpc::Status RegisterAgent(const rpci::v1::RegisterAgentRequest& req) {
    grpc::ClientContext ctx;
    rpci::v1::RegisterResponse resp;
    return agents->RegisterAgent(&ctx, req, &resp);
  }
  grpc::Status RegisterNode(const rpci::v1::RegisterNodeRequest& req) {
    grpc::ClientContext ctx;
    rpci::v1::RegisterResponse resp;
    return nodes->RegisterNode(&ctx, req, &resp);
  }
  // Device server `server` exporting `count` devices of `pool`, then
  // compute node `node` asking for that pool.
  absl::Status Register(const std::string& server, const std::string& pool, int count,
                        const std::string& node = "cn-1") {
    grpc::Status s = RegisterAgent(AgentWith(server, pool, count));
    if (s.ok()) s = RegisterNode(NodeWith(node, pool));
    return FromGrpc(s);
  }
  absl::StatusOr<rpci::v1::ClaimResponse> Claim(const std::string& node, const std::string& device) {
    grpc::ClientContext ctx;
    rpci::v1::ClaimResponse resp;
    grpc::Status s = nodes->Claim(&ctx, ClaimOf(node, device, "trainer", "team-a"), &resp);
    if (!s.ok()) return FromGrpc(s);
    return resp;
  }
  std::unique_ptr<rpci::v1::AgentRegistry::Stub> agents;
  std::unique_ptr<rpci::v1::NodeRegistry::Stub> nodes;
};

class ControllerAppTest : public testing::InstalledApiServerTest {
 protected:
  ControllerOptions KubeOptions(const std::string& identity) {
    ControllerOptions o = KubeStoreOptions(server_.url(), testing::kInstallNamespace);
    o.identity = identity;
    o.tls.insecure = true;
    o.lease_duration = absl::Milliseconds(1500);
    o.renew_deadline = absl::Milliseconds(1000);
    o.retry_period = absl::Milliseconds(200);
    o.reconcile_interval = absl::Milliseconds(100);
    return o;
  }

  // Replica "ctrl-a", once it acts as the leader.
  std::unique_ptr<ControllerApp> Acting() {
    std::unique_ptr<ControllerApp> a = Started(KubeOptions("ctrl-a"));
    if (a != nullptr) {
      EXPECT_TRUE(WaitFor([&] { return a->acting(); }));
    }
    return a;
  }

  std::unique_ptr<ControllerApp> Started(ControllerOptions o) {
    absl::StatusOr<std::unique_ptr<ControllerApp>> app = ControllerApp::Create(std::move(o));
    EXPECT_TRUE(app.ok()) << app.status();
    if (!app.ok()) return nullptr;
    absl::Status s = (*app)->Start();
    EXPECT_TRUE(s.ok()) << s;
    return *std::move(app);
  }

  // device id -> assigned node, as the PcieDevice objects in the API say.
  std::map<std::string, std::string> AssignedInApi() {
    std::map<std::string, std::string> out;
    absl::StatusOr<json> list = client_->Get(KubeStore::kDevicesPath);
    if (!list.ok()) return out;
    for (const json& o : list->value("items", json::array())) {
      const std::string node = o.value("status", json::object()).value("assignedNode", "");
      if (!node.empty()) out[o["metadata"].value("name", "")] = node;
    }
    return out;
  }
};

TEST_F(ControllerAppTest, StandbyTakesOverFromACrashedLeaderWithoutDoubleAssignment) {
  auto a = Started(KubeOptions("ctrl-a"));
  ASSERT_TRUE(a);
  ASSERT_TRUE(WaitFor([&] { return a->acting(); }));
  auto b = Started(KubeOptions("ctrl-b"));
  ASSERT_TRUE(b);
  Peer to_a(a->grpc_port()), to_b(b->grpc_port());

  ASSERT_TRUE(to_a.RegisterAgent(AgentWith("dev-a", "emu", 4)).ok());
  ASSERT_TRUE(to_a.RegisterNode(NodeWith("cn-1", "emu")).ok());
  ASSERT_TRUE(to_a.RegisterNode(NodeWith("cn-2", "emu")).ok());
  ASSERT_TRUE(WaitFor([&] { return AssignedInApi().size() == 2; })) << "one spare per node";
  const std::map<std::string, std::string> before = AssignedInApi();
  EXPECT_FALSE(b->acting());
  grpc::Status refused = to_b.RegisterNode(NodeWith("cn-3", "emu"));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();

  a->Stop(/*release_lease=*/false);  // goes silent, as a crash would
  ASSERT_TRUE(WaitFor([&] { return b->acting(); })) << "standby never took over";
  // Let the new leader run several passes over the rebuilt state.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(AssignedInApi(), before);
  EXPECT_TRUE(b->manager().CheckInvariants().ok());

  // It carries on: a new compute node gets a device nobody else holds.
  ASSERT_TRUE(to_b.RegisterAgent(AgentWith("dev-a", "emu", 4)).ok());
  ASSERT_TRUE(to_b.RegisterNode(NodeWith("cn-1", "emu")).ok());
  ASSERT_TRUE(to_b.RegisterNode(NodeWith("cn-2", "emu")).ok());
  ASSERT_TRUE(to_b.RegisterNode(NodeWith("cn-3", "emu")).ok());
  ASSERT_TRUE(WaitFor([&] { return AssignedInApi().size() == 3; }));
  std::map<std::string, int> per_node;
  for (const auto& [dev, node] : AssignedInApi()) ++per_node[node];
  EXPECT_EQ(per_node, (std::map<std::string, int>{{"cn-1", 1}, {"cn-2", 1}, {"cn-3", 1}}));
  for (const auto& [dev, node] : before) EXPECT_EQ(AssignedInApi()[dev], node);
  absl::StatusOr<json> lease =
      server_.Get("/apis/coordination.k8s.io/v1/namespaces/rpci-system/leases/rpci-controller");
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ((*lease)["spec"].value("holderIdentity", ""), "ctrl-b");
}

TEST_F(ControllerAppTest, GracefulStopHandsTheLeaseOverAtOnce) {
  auto a = Acting();
  ASSERT_TRUE(a);
  ControllerOptions slow = KubeOptions("ctrl-b");
  slow.lease_duration = absl::Seconds(60);  // a silent leader would keep it a minute
  auto b = Started(slow);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(b->acting());
  a->Stop(/*release_lease=*/true);
  EXPECT_TRUE(WaitFor([&] { return b->acting(); }, absl::Seconds(5)));
}

TEST_F(ControllerAppTest, DeletingADeviceAttachmentDetachesTheDevice) {
  auto a = Acting();
  ASSERT_TRUE(a);
  Peer peer(a->grpc_port());
  ASSERT_TRUE(peer.Register("dev-a", "emu", 1).ok());
  const std::string dev = "dev-a-0000-3b-00-0";
  ASSERT_TRUE(WaitFor([&] { return AssignedInApi().count(dev) == 1; }));
  absl::StatusOr<rpci::v1::ClaimResponse> claim = peer.Claim("cn-1", dev);
  ASSERT_TRUE(claim.ok()) << claim.status();
  const std::string path =
      absl::StrCat(KubeStore::AttachmentsIn(testing::kInstallNamespace), "/", claim->grant().grant_id());
  ASSERT_TRUE(WaitFor([&] { return server_.Get(path).ok(); }));
  ASSERT_EQ(a->manager().GrantsFor("dev-a").size(), 1u);

  server_.Delete(path);  // as `kubectl delete deviceattachment` would

  ASSERT_TRUE(WaitFor([&] { return a->manager().GrantsFor("dev-a").empty(); })) << "grant not revoked";
  EXPECT_TRUE(WaitFor([&] {
    absl::StatusOr<json> d = server_.Get(absl::StrCat(KubeStore::kDevicesPath, "/", dev));
    return d.ok() && (*d)["status"].value("attachment", "x").empty();
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(server_.Get(path).ok()) << "the controller re-created the deleted attachment";
}

TEST_F(ControllerAppTest, NodeLabelsFromTheApiSelectDevices) {
  server_.Put("/apis/rpci.io/v1alpha1/devicepools/emu",
              {{"apiVersion", "rpci.io/v1alpha1"},
               {"kind", "DevicePool"},
               {"metadata", {{"name", "emu"}}},
               {"spec", {{"sparesPerNode", 1}, {"selector", {{"matchLabels", {{"rack", "r7"}}}}}}}});
  auto a = Acting();
  ASSERT_TRUE(a);
  Peer peer(a->grpc_port());
  ASSERT_TRUE(peer.RegisterAgent(AgentWith("dev-a", "emu", 1)).ok());
  ASSERT_TRUE(peer.RegisterAgent(AgentWith("dev-b", "emu", 1)).ok());
  ASSERT_TRUE(peer.RegisterNode(NodeWith("cn-1", "emu")).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_TRUE(AssignedInApi().empty()) << "no device server is labelled rack=r7 yet";

  server_.Put(
      "/api/v1/nodes/dev-b",
      {{"apiVersion", "v1"}, {"kind", "Node"}, {"metadata", {{"name", "dev-b"}, {"labels", {{"rack", "r7"}}}}}});

  ASSERT_TRUE(WaitFor([&] { return !AssignedInApi().empty(); }));
  EXPECT_EQ(AssignedInApi(), (std::map<std::string, std::string>{{"dev-b-0000-3b-00-0", "cn-1"}}));
}

// DevicePool status is written with counts per phase and conditions, and
// follows the devices as they are assigned and attached.
TEST_F(ControllerAppTest, DevicePoolStatusCountsDevicesByPhase) {
  server_.Put("/apis/rpci.io/v1alpha1/devicepools/emu",
              {{"apiVersion", "rpci.io/v1alpha1"},
               {"kind", "DevicePool"},
               {"metadata", {{"name", "emu"}, {"generation", 1}}},
               {"spec", {{"resourceName", "rpci.io/emu"}, {"sparesPerNode", 1}}}});
  auto a = Acting();
  ASSERT_TRUE(a);
  Peer peer(a->grpc_port());
  ASSERT_TRUE(peer.Register("dev-a", "emu", 3).ok());
  const std::string path = "/apis/rpci.io/v1alpha1/devicepools/emu";
  auto status_is = [&](int available, int assigned, int attached) {
    absl::StatusOr<json> p = server_.Get(path);
    if (!p.ok() || !(*p).contains("status")) return false;
    const json& st = (*p)["status"];
    return st.value("available", -1) == available && st.value("assigned", -1) == assigned &&
           st.value("attached", -1) == attached && st.value("total", -1) == 3;
  };
  ASSERT_TRUE(WaitFor([&] { return status_is(2, 1, 0); })) << server_.Get(path)->dump();
  const json status = (*server_.Get(path))["status"];
  EXPECT_EQ(status["observedGeneration"], 1);
  ASSERT_EQ(status["conditions"].size(), 2u);
  EXPECT_EQ(status["conditions"][0]["type"], "Valid");
  EXPECT_EQ(status["conditions"][0]["status"], "True");
  EXPECT_EQ(status["conditions"][1]["type"], "Ready");
  EXPECT_EQ(status["conditions"][1]["status"], "True");
  std::string dev;
  for (const Device& d : a->manager().Devices()) {
    if (d.assigned_node == "cn-1") dev = d.id();
  }
  ASSERT_TRUE(peer.Claim("cn-1", dev).ok());
  EXPECT_TRUE(WaitFor([&] { return status_is(1, 1, 1); })) << server_.Get(path)->dump();
}

TEST_F(ControllerAppTest, ADraPoolIsPublishedAsResourceSlicesAndAPreparedClaimLeavesThem) {
  json pool = server_.Put("/apis/rpci.io/v1alpha1/devicepools/gpu",
                          {{"apiVersion", "rpci.io/v1alpha1"},
                           {"kind", "DevicePool"},
                           {"metadata", {{"name", "gpu"}}},
                           {"spec", {{"allocationMode", "dra"}}}});
  auto a = Acting();
  ASSERT_TRUE(a);
  Peer peer(a->grpc_port());
  ASSERT_TRUE(peer.Register("dev-a", "gpu", 2).ok());
  const std::string slice_path = "/apis/resource.k8s.io/v1/resourceslices/rpci-gpu-0";
  auto devices_in_slice = [&] {
    absl::StatusOr<json> s = server_.Get(slice_path);
    return s.ok() ? static_cast<int>((*s)["spec"]["devices"].size()) : -1;
  };
  ASSERT_TRUE(WaitFor([&] { return devices_in_slice() == 2; }));
  json slice = *server_.Get(slice_path);
  EXPECT_EQ(slice["metadata"]["ownerReferences"][0]["uid"], pool["metadata"]["uid"]);
  // A DRA-only pool gets no device-plugin placement.
  for (const Device& d : a->manager().Devices()) EXPECT_EQ(d.assigned_node, "") << d.id();
  // The scheduler allocates a claim from the slice; the plugin prepares it.
  server_.CreateNamespace("ml");
  json claim =
      server_.Put("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1",
                  AllocatedClaim("c1", {ClaimResult("gpu", "gpu", slice["spec"]["devices"][0]["name"])}));
  grpc::ClientContext ctx;
  rpci::v1::PrepareClaimResponse resp;
  grpc::Status s = peer.nodes->PrepareClaim(
      &ctx, ClaimOn("cn-1", "ml", "c1", claim["metadata"]["uid"]), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(WaitFor([&] { return devices_in_slice() == 1; })) << server_.Get(slice_path)->dump();
  EXPECT_GE((*server_.Get(slice_path))["spec"]["pool"]["generation"].get<int>(), 2);
  // The DevicePool goes: so do its slices.
  server_.Delete("/apis/rpci.io/v1alpha1/devicepools/gpu");
  EXPECT_TRUE(WaitFor([&] { return !server_.Get(slice_path).ok(); }));
}

TEST_F(ControllerAppTest, InABothPoolTheDevicePluginIsNotGivenADeviceAClaimWasAllocated) {
  server_.Put("/apis/rpci.io/v1alpha1/devicepools/mixed",
              {{"apiVersion", "rpci.io/v1alpha1"},
               {"kind", "DevicePool"},
               {"metadata", {{"name", "mixed"}}},
               {"spec", {{"allocationMode", "both"}, {"sparesPerNode", 1}}}});
  server_.CreateNamespace("ml");
  // The scheduler allocated the pool's first device to a claim.
  server_.Put("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1",
              AllocatedClaim("c1", {ClaimResult("r", "mixed", "dev-a-0000-3b-00-0")}));
  auto a = Acting();
  ASSERT_TRUE(a);
  Peer peer(a->grpc_port());
  ASSERT_TRUE(peer.RegisterAgent(AgentWith("dev-a", "mixed", 2)).ok());
  // The claims informer (the sixth watch, after the five the controller
  // always runs) has listed the claims once it watches.
  ASSERT_TRUE(WaitFor([&] { return server_.watch_requests() >= 6; }));
  ASSERT_TRUE(peer.RegisterNode(NodeWith("cn-1", "mixed")).ok());
  ASSERT_TRUE(WaitFor([&] { return AssignedInApi().count("dev-a-0000-3b-00-1") > 0; })) << "a spare for cn-1";
  EXPECT_EQ(AssignedInApi().count("dev-a-0000-3b-00-0"), 0u);
}

TEST_F(ControllerAppTest, WithBindingConditionsABoundClaimIsAttachedAndReportedOnItsStatus) {
  server_.Put("/apis/rpci.io/v1alpha1/devicepools/gpu", {{"apiVersion", "rpci.io/v1alpha1"},
                                                         {"kind", "DevicePool"},
                                                         {"metadata", {{"name", "gpu"}}},
                                                         {"spec", {{"allocationMode", "dra"}}}});
  ControllerOptions o = KubeOptions("ctrl-a");
  o.dra_binding_conditions = true;
  auto a = Started(o);
  ASSERT_TRUE(WaitFor([&] { return a->acting(); }));
  Peer peer(a->grpc_port());
  ASSERT_TRUE(peer.Register("dev-a", "gpu", 1).ok());
  const std::string slice_path = "/apis/resource.k8s.io/v1/resourceslices/rpci-gpu-0";
  ASSERT_TRUE(WaitFor([&] { return server_.Get(slice_path).ok(); }));
  const json device = (*server_.Get(slice_path))["spec"]["devices"][0];
  EXPECT_EQ(device["bindingConditions"], json({"rpci.io/Attached"}));
  // The scheduler allocates it, copying the conditions, bound to cn-1.
  server_.CreateNamespace("ml");
  json result = ClaimResult("r", "gpu", device["name"]);
  result["bindingConditions"] = device["bindingConditions"];
  result["bindingFailureConditions"] = device["bindingFailureConditions"];
  json claim = AllocatedClaim("c1", {result});
  claim["status"]["allocation"]["nodeSelector"] = {
      {"nodeSelectorTerms", {{{"matchFields", {{{"key", "metadata.name"}, {"operator", "In"}, {"values", {"cn-1"}}}}}}}}};
  server_.Put("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1", claim);
  auto attached = [&] {
    absl::StatusOr<json> c = server_.Get("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1");
    if (!c.ok() || !(*c)["status"].contains("devices")) return false;
    return (*c)["status"]["devices"][0]["conditions"][0]["type"] == "rpci.io/Attached";
  };
  EXPECT_TRUE(WaitFor(attached)) << server_.Get("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims/c1")->dump();
  EXPECT_EQ(a->manager().Attachments().size(), 1u);
}

// Scrapes the real /metrics endpoint.
testing_prom::Exposition Scrape(int port) {
  httplib::Client cli("127.0.0.1", port);
  httplib::Result r = cli.Get("/metrics");
  EXPECT_TRUE(r && r->status == 200);
  absl::StatusOr<testing_prom::Exposition> e = testing_prom::CheckExpositionFormat(r ? r->body : "");
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *e : testing_prom::Exposition{};
}

double ValueOr0(const testing_prom::Exposition& e, const std::string& name,
                const std::map<std::string, std::string>& labels) {
  absl::StatusOr<double> v = e.Value(name, labels);
  return v.ok() ? *v : 0;
}

TEST(ControllerAppOptionsTest, LeaseNotLongerThanTheHeartbeatIsRefused) {
  ControllerOptions o;
  o.store = "local";
  o.state_dir = testing::MakeTempDir("lease");
  o.agent_lease = absl::Seconds(3);
  absl::StatusOr<std::unique_ptr<ControllerApp>> app = ControllerApp::Create(o);
  ASSERT_FALSE(app.ok());
  EXPECT_EQ(app.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(app.status().message().find("--agent-lease-seconds"), std::string::npos) << app.status();
}

TEST(ControllerMetricsTest, DecisionCountersAndPhaseGaugesFollowThePoolManager) {
  Logger::SetMinLevel(LogLevel::kError);
  ControllerOptions o;
  o.store = "local";
  o.state_dir = MakeTempDir("app-metrics");
  o.tls.insecure = true;
  o.listen = "127.0.0.1:0";
  o.http_listen = "127.0.0.1:0";
  o.reconcile_interval = absl::Milliseconds(50);
  o.default_spares = 1;
  auto app = ControllerApp::Create(o);
  ASSERT_TRUE(app.ok()) << app.status();
  ASSERT_TRUE((*app)->Start().ok());
  EXPECT_TRUE((*app)->acting()) << "a single replica acts as soon as it serves";
  const int port = (*app)->http_port();
  Peer peer((*app)->grpc_port());
  ASSERT_TRUE(peer.RegisterAgent(AgentWith("dev-a", "emu", 3)).ok());
  const std::map<std::string, std::string> spare = {{"pool", "emu"}, {"action", "assign"}, {"reason", "Spare"}};
  ASSERT_TRUE(WaitFor([&] {
    return ValueOr0(Scrape(port), "rpci_controller_devices", {{"pool", "emu"}, {"phase", "Available"}}) == 3;
  }));
  testing_prom::Exposition before = Scrape(port);
  EXPECT_EQ(before.types["rpci_controller_decisions_total"], "counter");
  EXPECT_EQ(before.types["rpci_controller_devices"], "gauge");
  EXPECT_EQ(ValueOr0(before, "rpci_controller_decisions_total", spare), 0);

  ASSERT_TRUE(peer.RegisterNode(NodeWith("cn-1", "emu")).ok());
  ASSERT_TRUE(WaitFor([&] {
    return ValueOr0(Scrape(port), "rpci_controller_devices", {{"pool", "emu"}, {"phase", "Assigned"}}) == 1;
  }));
  testing_prom::Exposition assigned = Scrape(port);
  EXPECT_EQ(ValueOr0(assigned, "rpci_controller_decisions_total", spare), 1);
  EXPECT_EQ(ValueOr0(assigned, "rpci_controller_devices", {{"pool", "emu"}, {"phase", "Available"}}), 2);

  std::string dev;
  for (const Device& d : (*app)->manager().Devices()) {
    if (d.assigned_node == "cn-1") dev = d.id();
  }
  ASSERT_TRUE(peer.Claim("cn-1", dev).ok());
  ASSERT_TRUE(WaitFor([&] {
    return ValueOr0(Scrape(port), "rpci_controller_devices", {{"pool", "emu"}, {"phase", "Attached"}}) == 1;
  }));
  testing_prom::Exposition attached = Scrape(port);
  EXPECT_EQ(ValueOr0(attached, "rpci_controller_devices", {{"pool", "emu"}, {"phase", "Assigned"}}), 1)
      << "a new spare replaces the attached one";
  EXPECT_EQ(ValueOr0(attached, "rpci_controller_decisions_total", spare), 2);
  EXPECT_EQ(ValueOr0(attached, "rpci_controller_decisions_total",
                     {{"pool", "emu"}, {"action", "attach"}, {"reason", "Claimed"}}),
            1);
  (*app)->Stop();
}

}  // namespace
}  // namespace rpci::controller
