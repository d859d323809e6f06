// Runs inside the test machine (//tests/vm:verbs_keys_test): what a memory
// key is worth on verbs (Soft-RoCE, FI_MR_PROV_KEY: the NIC picks 32-bit
// keys). One rxe device; every endpoint binds its address, so rxe loops the
// packets back itself.
//   - a previous session's (address, key) does nothing after teardown, even
//     when the same buffer is registered again;
//   - a key is refused by an endpoint of another domain (protection domain),
//     which is what keeps sessions apart when each has its own domain;
//   - within one domain a key works for every connected peer: the provider
//     does not tie a key to the peer it was handed to;
//   - the agent's session server (the same code as on tcp) gives each
//     session a domain of its own: session A's (address, key) does nothing
//     through session B's endpoint, and nothing after A's teardown.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/session/session_server.h"
#include "agent/session/testing/test_device.h"
#include "client/session_client.h"
#include "common/fabric/fabric.h"
#include "common/metrics.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "session/bounds.h"
#include "tests/vm/soft_roce.h"

namespace rpci::testing {
namespace {

using fabric::Endpoint;
using fabric::Fabric;
using fabric::FabricConfig;
using fabric::MemoryRegion;
using fabric::PeerId;
using fabric::RmaOp;

constexpr char kAddr[] = "10.97.0.1";

class VerbsKeysTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const std::vector<std::string>& step : std::vector<std::vector<std::string>>{
             {"modprobe", "rdma_rxe"},
             {"ip", "link", "add", "rpcik0", "type", "veth", "peer", "name", "rpcik1"},
             {"ip", "addr", "add", std::string(kAddr) + "/24", "dev", "rpcik0"},
             {"ip", "link", "set", "rpcik0", "up"},
             {"ip", "link", "set", "rpcik1", "up"},
             {"rdma", "link", "add", "rxek0", "type", "rxe", "netdev", "rpcik0"}}) {
      absl::StatusOr<std::string> out = CommandOutput(step);
      ASSERT_TRUE(out.ok()) << out.status();
    }
    absl::SleepFor(absl::Seconds(1));  // port ACTIVE, GID for the address
  }
  // No teardown: this process keeps the rxe device open (libfabric's verbs
  // provider holds its contexts until exit), and unregistering it waits for
  // that, so `rdma link delete` here would hang; the guest is discarded.

  static FabricConfig Config() {
    FabricConfig c;
    c.provider = fabric::kVerbs;
    c.node = kAddr;
    c.op_timeout = absl::Seconds(5);
    return c;
  }
  // A fabric (own domain) with one endpoint.
  struct Host {
    std::unique_ptr<Fabric> fabric;
    std::unique_ptr<Endpoint> ep;
  };
  static Host Open() {
    Host h;
    absl::StatusOr<std::unique_ptr<Fabric>> f = Fabric::Open(Config());
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok()) return h;
    h.fabric = std::move(*f);
    absl::StatusOr<std::unique_ptr<Endpoint>> ep = h.fabric->OpenEndpoint();
    EXPECT_TRUE(ep.ok()) << ep.status();
    if (ep.ok()) h.ep = std::move(*ep);
    return h;
  }
  static PeerId Connect(Endpoint& from, Endpoint& to) {
    absl::StatusOr<PeerId> p = from.InsertPeer(to.address());
    EXPECT_TRUE(p.ok()) << p.status();
    (void)to.InsertPeer(from.address());
    return p.value_or(0);
  }
};

TEST_F(VerbsKeysTest, APreviousSessionsKeyDoesNothingAfterTeardown) {
  Host agent = Open(), client = Open();
  ASSERT_NE(agent.ep, nullptr);
  ASSERT_NE(client.ep, nullptr);
  EXPECT_EQ(agent.ep->provider(), fabric::kVerbs);
  std::vector<uint8_t> dma(65536, 0), src(4096, 0x5a);
  auto src_mr = *client.ep->RegisterMemory(src.data(), src.size(), fabric::kLocalOnly);
  auto dma_mr = *agent.ep->RegisterMemory(dma.data(), dma.size(), fabric::kRemoteWrite | fabric::kRemoteRead);
  const fabric::RemoteRegion old = dma_mr->remote();
  std::printf("verbs key of a 64 KiB region: 0x%llx at 0x%llx (mr_mode prov_key=%d)\n",
              static_cast<unsigned long long>(old.key), static_cast<unsigned long long>(old.address),
              agent.ep->mr_mode().prov_key);
  PeerId peer = Connect(*client.ep, *agent.ep);
  ASSERT_TRUE(client.ep->Write(peer, RmaOp{src_mr.get(), 0, 4096, old.address, old.key}).ok());
  EXPECT_EQ(dma[0], 0x5a);

  // Teardown (detach): the region is deregistered and the DMA space scrubbed.
  dma_mr->Revoke();
  std::fill(dma.begin(), dma.end(), 0);
  absl::Status s = client.ep->Write(peer, RmaOp{src_mr.get(), 0, 4096, old.address, old.key});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(dma, std::vector<uint8_t>(65536, 0));

  // The next tenant's registration of the same buffer has another key; the
  // old one still does nothing. (A broken RC connection is re-dialled by rxm.)
  auto next_mr = *agent.ep->RegisterMemory(dma.data(), dma.size(), fabric::kRemoteWrite | fabric::kRemoteRead);
  EXPECT_NE(next_mr->remote().key, old.key);
  Host client2 = Open();
  ASSERT_NE(client2.ep, nullptr);
  auto src2_mr = *client2.ep->RegisterMemory(src.data(), src.size(), fabric::kLocalOnly);
  PeerId peer2 = Connect(*client2.ep, *agent.ep);
  EXPECT_FALSE(client2.ep->Write(peer2, RmaOp{src2_mr.get(), 0, 4096, old.address, old.key}).ok());
  EXPECT_EQ(dma, std::vector<uint8_t>(65536, 0));
}

TEST_F(VerbsKeysTest, AKeyIsRefusedByAnotherDomainsEndpoint) {
  // Two sessions on one agent, each in its own domain.
  Host session_a = Open(), session_b = Open(), peer_b = Open();
  ASSERT_NE(session_a.ep, nullptr);
  ASSERT_NE(session_b.ep, nullptr);
  ASSERT_NE(peer_b.ep, nullptr);
  std::vector<uint8_t> a_dma(65536, 0), b_dma(65536, 0), src(4096, 0x77);
  auto a_mr = *session_a.ep->RegisterMemory(a_dma.data(), a_dma.size(), fabric::kRemoteWrite | fabric::kRemoteRead);
  auto b_mr = *session_b.ep->RegisterMemory(b_dma.data(), b_dma.size(), fabric::kRemoteWrite | fabric::kRemoteRead);
  auto src_mr = *peer_b.ep->RegisterMemory(src.data(), src.size(), fabric::kLocalOnly);
  PeerId to_b = Connect(*peer_b.ep, *session_b.ep);
  ASSERT_TRUE(peer_b.ep->Write(to_b, RmaOp{src_mr.get(), 0, 64, b_mr->remote().address, b_mr->remote().key}).ok());
  // Session b's peer has learnt a's (address, key) somehow: b's endpoint
  // refuses it.
  absl::Status s = peer_b.ep->Write(to_b, RmaOp{src_mr.get(), 0, 4096, a_mr->remote().address, a_mr->remote().key});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(a_dma, std::vector<uint8_t>(65536, 0));
}

// Why sessions need a domain each on verbs: within one domain the key is
// the only check.
TEST_F(VerbsKeysTest, WithinOneDomainAKeyWorksForEveryConnectedPeer) {
  Host agent = Open(), peer_a = Open(), peer_b = Open();
  ASSERT_NE(agent.ep, nullptr);
  std::vector<uint8_t> a_dma(4096, 0), src(4096, 0x33);
  auto a_mr = *agent.ep->RegisterMemory(a_dma.data(), a_dma.size(), fabric::kRemoteWrite);
  auto src_mr = *peer_b.ep->RegisterMemory(src.data(), src.size(), fabric::kLocalOnly);
  Connect(*peer_a.ep, *agent.ep);
  PeerId b = Connect(*peer_b.ep, *agent.ep);
  absl::Status s = peer_b.ep->Write(b, RmaOp{src_mr.get(), 0, 4096, a_mr->remote().address, a_mr->remote().key});
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(a_dma[0], 0x33);
}

// The session server itself on verbs: every session in its own domain.
TEST_F(VerbsKeysTest, TheSessionServerKeepsEachSessionsKeysInItsOwnDomain) {
  MetricsRegistry metrics;
  agent::GrantTable grants;
  grants.Upsert({"ga", "dev-a", "node", "token", absl::InfiniteFuture()});
  grants.Upsert({"gb", "dev-b", "node", "token", absl::InfiniteFuture()});
  agent::testing::TestDevice dev_a(65536), dev_b(65536);
  agent::SessionServerOptions opts;
  opts.metrics = &metrics;
  opts.fabric = Config();
  auto server = agent::SessionServer::Create(opts, &grants, {{"dev-a", &dev_a}, {"dev-b", &dev_b}});
  ASSERT_TRUE(server.ok()) << server.status();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(server->get());
  auto grpc_server = builder.BuildAndStart();
  ASSERT_NE(grpc_server, nullptr);
  const std::string control = "127.0.0.1:" + std::to_string(port);
  client::ClientOptions copts;
  copts.fabric = Config();
  copts.grace = absl::Seconds(30);
  auto ticket_a = client::ControlClient().Reserve(control, {"ga", "token", "node"});
  auto ticket_b = client::ControlClient().Reserve(control, {"gb", "token", "node"});
  ASSERT_TRUE(ticket_a.ok() && ticket_b.ok());
  auto a = client::SessionClient::Attach(*ticket_a, copts);
  auto b = client::SessionClient::Attach(*ticket_b, copts);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  // Frames are bound to the sender's address: on verbs;ofi_rxm too the agent
  // knows the attached client's (a register write goes through).
  ASSERT_TRUE((*b)->Write(0, 0x40, 4, 7).ok());
  absl::Status synced = (*b)->Sync(absl::Seconds(30));
  ASSERT_TRUE(synced.ok()) << synced;
  ASSERT_EQ(dev_b.applied().size(), 1u);
  EXPECT_EQ(metrics.Render().find("foreign_peer"), std::string::npos);
  const session::RegionDesc a_dma = *session::FindRegion((*a)->agent_regions(), session::RegionKind::kDma);
  std::printf("session A's DMA key on verbs: 0x%llx at 0x%llx\n", static_cast<unsigned long long>(a_dma.key),
              static_cast<unsigned long long>(a_dma.address));
  std::vector<uint8_t> src(4096, 0x66);
  // A peer of session A's endpoint reaches A's DMA space with A's key: the
  // key is live (the check below could fail).
  Host to_a = Open();
  ASSERT_NE(to_a.ep, nullptr);
  auto src_a = *to_a.ep->RegisterMemory(src.data(), src.size(), fabric::kLocalOnly);
  PeerId pa = *to_a.ep->InsertPeer(*(*server)->fabric_address(ticket_a->session_id));
  absl::Status w = to_a.ep->Write(pa, RmaOp{src_a.get(), 0, 64, a_dma.address, a_dma.key});
  ASSERT_TRUE(w.ok()) << w;
  EXPECT_EQ(dev_a.dma_space()[0], 0x66);
  std::fill(dev_a.dma_space(), dev_a.dma_space() + 64, 0);
  // A peer of session B's endpoint, with A's (address, key): refused.
  Host to_b = Open();
  ASSERT_NE(to_b.ep, nullptr);
  auto src_b = *to_b.ep->RegisterMemory(src.data(), src.size(), fabric::kLocalOnly);
  PeerId pb = *to_b.ep->InsertPeer(*(*server)->fabric_address(ticket_b->session_id));
  EXPECT_FALSE(to_b.ep->Write(pb, RmaOp{src_b.get(), 0, 64, a_dma.address, a_dma.key}).ok());
  EXPECT_EQ(std::count(dev_a.dma_space(), dev_a.dma_space() + 64, 0), 64);
  // After A's teardown nothing of A's domain answers.
  const std::string a_address = *(*server)->fabric_address(ticket_a->session_id);
  (*a)->Close().IgnoreError();
  ASSERT_TRUE(client::ControlClient().Close(*ticket_a).ok());
  Host late = Open();
  ASSERT_NE(late.ep, nullptr);
  auto src_late = *late.ep->RegisterMemory(src.data(), src.size(), fabric::kLocalOnly);
  PeerId pl = *late.ep->InsertPeer(a_address);
  EXPECT_FALSE(late.ep->Write(pl, RmaOp{src_late.get(), 0, 64, a_dma.address, a_dma.key}).ok());
  EXPECT_EQ(std::count(dev_a.dma_space(), dev_a.dma_space() + 64, 0), 64);
  (*b)->Close().IgnoreError();
  grpc_server->Shutdown(std::chrono::system_clock::now());
  (*server)->Stop();
}

}  // namespace
}  // namespace rpci::testing
