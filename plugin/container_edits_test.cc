// Which device nodes a container gets for its session's fabric
// (plugin/container_edits.h), that the Allocate response or the CDI spec
// carries them, and that each device's edits travel by one of the two.
#include "plugin/container_edits.h"

#include "agent/inventory/testing/sysfs_tree.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rpci::plugin {
namespace {

rpci::v1::RdmaNic Nic(const std::string& name, const std::string& netdev, const std::string& uverbs) {
  rpci::v1::RdmaNic nic;
  nic.set_name(name);
  nic.set_uverbs_device(uverbs);
  rpci::v1::RdmaPort* port = nic.add_ports();
  port->set_port(1);
  port->set_netdev(netdev);
  return nic;
}

TEST(FabricDeviceNodesTest, VerbsGetsTheUverbsDeviceOfTheNicOnTheRoutesNetdevAndRdmaCm) {
  std::vector<rpci::v1::RdmaNic> nics = {Nic("mlx5_0", "eth0", "/dev/infiniband/uverbs0"),
                                         Nic("mlx5_1", "eth1", "/dev/infiniband/uverbs1")};
  absl::StatusOr<std::vector<std::string>> nodes = FabricDeviceNodes("verbs;ofi_rxm", "eth1", nics);
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  EXPECT_EQ(*nodes, (std::vector<std::string>{"/dev/infiniband/uverbs1", "/dev/infiniband/rdma_cm"}));
}

TEST(FabricDeviceNodesTest, TcpNeedsNoDeviceNodes) {
  absl::StatusOr<std::vector<std::string>> nodes = FabricDeviceNodes("tcp;ofi_rxm", "eth0", {});
  ASSERT_TRUE(nodes.ok());
  EXPECT_TRUE(nodes->empty());
}

TEST(FabricDeviceNodesTest, VerbsWithoutANicOnTheNetdevIsAClearError) {
  absl::StatusOr<std::vector<std::string>> nodes =
      FabricDeviceNodes("verbs;ofi_rxm", "eth9", {Nic("rxe0", "veth0", "/dev/infiniband/uverbs0")});
  EXPECT_EQ(nodes.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(nodes.status().message().find("eth9"), std::string::npos) << nodes.status();
  EXPECT_NE(nodes.status().message().find("rxe0@veth0"), std::string::npos) << nodes.status();
}

// The route to 127.0.0.1 leaves through lo; an rxe device on lo in a test
// sysfs tree is the one chosen.
TEST(SessionDeviceNodesTest, ReadsTheNicsFromSysfsAndFollowsTheRoute) {
  agent::testing::SysfsTree tree;
  tree.AddSoftRdmaDevice("rxe_lo", "lo");
  tree.MakeDir("class/net/lo");
  tree.WriteFile("class/infiniband_verbs/uverbs4/ibdev", "rxe_lo\n");
  absl::StatusOr<std::vector<std::string>> nodes = SessionDeviceNodes("verbs;ofi_rxm", "127.0.0.1:7450", tree.root());
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  EXPECT_EQ(*nodes, (std::vector<std::string>{"/dev/infiniband/uverbs4", "/dev/infiniband/rdma_cm"}));
}

TEST(ContainerEditsTest, ResponseAndCdiSpecCarryEachDeviceNodeOnce) {
  AttachedSession a, b;
  a.device_id = "dev-a";
  a.ticket.session_id = *session::SessionId::Parse("0000000000000001");
  a.device_nodes = {"/dev/infiniband/uverbs1", "/dev/infiniband/rdma_cm"};
  b = a;
  b.device_id = "dev-b";
  std::vector<SessionPaths> paths = {PathsFor("/state", "/run/rpci", "dev-a"), PathsFor("/state", "/run/rpci", "dev-b")};
  v1beta1::ContainerAllocateResponse resp =
      BuildContainerResponse("emu", {a, b}, paths, DeviceEditsVia::kAllocateResponse);
  ASSERT_EQ(resp.devices_size(), 2);
  EXPECT_EQ(resp.devices(0).host_path(), "/dev/infiniband/uverbs1");
  EXPECT_EQ(resp.devices(0).container_path(), "/dev/infiniband/uverbs1");
  EXPECT_EQ(resp.devices(0).permissions(), "rw");
  EXPECT_EQ(resp.devices(1).host_path(), "/dev/infiniband/rdma_cm");

  nlohmann::json spec = nlohmann::json::parse(CdiSpecJson("emu", 0, a, paths[0]));
  const nlohmann::json& nodes = spec["devices"][0]["containerEdits"]["deviceNodes"];
  ASSERT_EQ(nodes.size(), 2u) << spec.dump();
  EXPECT_EQ(nodes[0]["path"], "/dev/infiniband/uverbs1");
  EXPECT_EQ(nodes[1]["path"], "/dev/infiniband/rdma_cm");
}

// Each device's env, mount and nodes travel once: in the response without
// CDI; with CDI only in the spec, the response naming the CDI devices.
TEST(ContainerEditsTest, DeviceEditsTravelInTheResponseOrInCdiNeverBoth) {
  AttachedSession a;
  a.device_id = "dev-a";
  a.ticket.session_id = *session::SessionId::Parse("0000000000000001");
  a.device_nodes = {"/dev/infiniband/rdma_cm"};
  std::vector<SessionPaths> paths = {PathsFor("/state", "/run/rpci", "dev-a")};

  v1beta1::ContainerAllocateResponse plain = BuildContainerResponse("emu", {a}, paths, DeviceEditsVia::kAllocateResponse);
  EXPECT_EQ(plain.envs().at("RPCI_0_DEVICE_ID"), "dev-a");
  EXPECT_EQ(plain.mounts_size(), 1);
  EXPECT_EQ(plain.devices_size(), 1);
  EXPECT_EQ(plain.cdi_devices_size(), 0);

  v1beta1::ContainerAllocateResponse cdi = BuildContainerResponse("emu", {a}, paths, DeviceEditsVia::kCdi);
  ASSERT_EQ(cdi.cdi_devices_size(), 1);
  EXPECT_EQ(cdi.cdi_devices(0).name(), "rpci.io/emu=dev-a");
  EXPECT_EQ(cdi.envs().count("RPCI_0_DEVICE_ID"), 0u);
  EXPECT_EQ(cdi.mounts_size(), 0);
  EXPECT_EQ(cdi.devices_size(), 0);
  // The container-wide summary is in the response in both modes (no spec
  // belongs to the container as a whole).
  for (const auto* r : {&plain, &cdi}) {
    EXPECT_EQ(r->envs().at("RPCI_DEVICE_IDS"), "dev-a");
    EXPECT_EQ(r->envs().at("RPCI_SESSION_ID"), "0000000000000001");
    EXPECT_EQ(r->annotations().at("rpci.io/devices"), "dev-a");
  }
}

}  // namespace
}  // namespace rpci::plugin
