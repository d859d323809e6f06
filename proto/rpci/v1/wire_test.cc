// rpci's own messages on the wire. A message's name is not on the wire, so
// one message type may serve two RPCs whose requests (or answers) are the
// same concept; what must not change is each RPC's method path and bytes,
// since agents, plugins and controllers of different versions talk during an
// upgrade.
#include <initializer_list>
#include <string>

#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "proto/rpci/v1/controller.pb.h"

namespace rpci::v1 {
namespace {

std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

const google::protobuf::MethodDescriptor* Method(const std::string& service, const std::string& method) {
  const auto* s = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
  return s == nullptr ? nullptr : s->FindMethodByName(method);
}

TEST(RpciWireTest, NodeClaimRequestIsNodeNamespaceNameUid) {
  NodeClaimRequest req;
  req.set_node("n");
  req.set_claim_namespace("ns");
  req.set_claim_name("c");
  req.set_claim_uid("u1");
  EXPECT_EQ(req.SerializeAsString(),
            Bytes({0x0a, 1, 'n', 0x12, 2, 'n', 's', 0x1a, 1, 'c', 0x22, 2, 'u', '1'}));
}

TEST(RpciWireTest, RegisterResponseIsHeartbeatIntervalThenLease) {
  RegisterResponse resp;
  resp.set_heartbeat_interval_seconds(10);
  resp.set_lease_seconds(30);
  EXPECT_EQ(resp.SerializeAsString(), Bytes({0x08, 10, 0x10, 30}));
}

TEST(RpciWireTest, PrepareAndUnprepareTakeTheSameClaimMessageAtTheirOwnPaths) {
  for (const std::string name : {"PrepareClaim", "UnprepareClaim"}) {
    const auto* m = Method("rpci.v1.NodeRegistry", name);
    ASSERT_NE(m, nullptr) << name;
    EXPECT_EQ("/" + m->service()->full_name() + "/" + m->name(), "/rpci.v1.NodeRegistry/" + name);
    EXPECT_EQ(m->input_type()->full_name(), "rpci.v1.NodeClaimRequest");
    EXPECT_EQ(m->output_type()->full_name(), "rpci.v1." + name + "Response");
  }
}

TEST(RpciWireTest, BothRegistrationsAnswerTheSameLeaseMessageAtTheirOwnPaths) {
  const auto* agent = Method("rpci.v1.AgentRegistry", "RegisterAgent");
  const auto* node = Method("rpci.v1.NodeRegistry", "RegisterNode");
  ASSERT_TRUE(agent != nullptr && node != nullptr);
  EXPECT_EQ(agent->input_type()->full_name(), "rpci.v1.RegisterAgentRequest");
  EXPECT_EQ(node->input_type()->full_name(), "rpci.v1.RegisterNodeRequest");
  EXPECT_EQ(agent->output_type()->full_name(), "rpci.v1.RegisterResponse");
  EXPECT_EQ(node->output_type()->full_name(), "rpci.v1.RegisterResponse");
}

TEST(RpciWireTest, EveryControllerMethodKeepsItsPath) {
  const std::string agent[] = {"RegisterAgent", "Heartbeat", "WatchGrants"};
  const std::string node[] = {"RegisterNode", "Heartbeat",    "WatchAssignments", "Claim",
                              "Release",      "ReportUsage", "PrepareClaim",     "UnprepareClaim"};
  for (const std::string& name : agent) EXPECT_NE(Method("rpci.v1.AgentRegistry", name), nullptr) << name;
  for (const std::string& name : node) EXPECT_NE(Method("rpci.v1.NodeRegistry", name), nullptr) << name;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  EXPECT_EQ(pool->FindServiceByName("rpci.v1.AgentRegistry")->method_count(), 3);
  EXPECT_EQ(pool->FindServiceByName("rpci.v1.NodeRegistry")->method_count(), 8);
}

}  // namespace
}  // namespace rpci::v1
