// End-to-end session tests: the real session server and client over
// tcp;ofi_rxm on loopback, with gRPC control on a local port.
#include <cstdlib>
#include <cstring>

#include "agent/session/session_server.h"
#include "agent/session/testing/test_device.h"
#include "client/session_client.h"
#include "common/fabric/fabric.h"
#include "common/testing/prometheus_text.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "session/wire.h"

namespace rpci::agent {
namespace {

using agent::testing::TestDevice;

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/rpci-session-XXXXXX";
    state_dir_ = mkdtemp(tmpl);
    grants_.Upsert({"g1", "dev0", "node-a", "secret-token", absl::InfiniteFuture()});
    StartServer();
  }
  void TearDown() override { StopServer(); }

  void StartServer(absl::Duration grace = absl::Seconds(10)) {
    SessionServerOptions opts;
    opts.state_dir = state_dir_;
    opts.metrics = &metrics_;
    opts.grace = grace;
    opts.attach_timeout = attach_timeout_;
    auto server = SessionServer::Create(opts, &grants_, {{"dev0", &device_}});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(port_ == 0 ? "127.0.0.1:0" : "127.0.0.1:" + std::to_string(port_),
                             grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(server_.get());
    grpc_ = builder.BuildAndStart();
    ASSERT_NE(grpc_, nullptr);
    port_ = port;
  }
  void StopServer() {
    if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now());
    grpc_.reset();
    if (server_) server_->Stop();
    server_.reset();
  }
  std::string Endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

  std::unique_ptr<client::SessionClient> Attach(client::SessionTicket* ticket_out = nullptr) {
    auto ticket = client::ReserveSession(Endpoint(), nullptr, "g1", "secret-token", "node-a");
    EXPECT_TRUE(ticket.ok()) << ticket.status();
    if (!ticket.ok()) return nullptr;
    if (ticket_out) *ticket_out = *ticket;
    client::ClientOptions opts;
    opts.grace = absl::Seconds(5);
    auto c = client::SessionClient::Attach(*ticket, opts);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  double Refused(const std::string& reason) {
    auto parsed = rpci::testing::ParsePrometheusText(metrics_.Render());
    if (!parsed.ok()) return -1;
    auto v = parsed->Value("rpci_session_refused_total", {{"reason", reason}});
    return v.ok() ? *v : 0;
  }

  std::string state_dir_;
  absl::Duration attach_timeout_ = absl::Minutes(10);
  int port_ = 0;
  MetricsRegistry metrics_;
  GrantTable grants_;
  TestDevice device_;
  std::unique_ptr<SessionServer> server_;
  std::unique_ptr<grpc::Server> grpc_;
};

TEST_F(SessionTest, RegisterWritesReachTheDeviceInProgramOrder) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  for (uint64_t i = 0; i < 600; ++i) ASSERT_TRUE(c->Write(0, (i % 16) * 8, 8, i).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  auto applied = device_.applied();
  ASSERT_EQ(applied.size(), 600u);
  for (uint64_t i = 0; i < 600; ++i) EXPECT_EQ(applied[i].second, i);
  EXPECT_EQ(c->acked_seq(), 600u);
}

// The MMIO ring is reused many times over: the agent must advance its head
// as it consumes, or the ring looks overfull once the tail passes capacity.
TEST_F(SessionTest, WritesKeepFlowingPastSeveralTurnsOfTheRing) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  const uint64_t n = 5 * 1024 + 7;
  for (uint64_t i = 0; i < n; ++i) {
    absl::Status w = c->Write(0, 0x200, 8, i);
    ASSERT_TRUE(w.ok()) << i << ": " << w;
  }
  absl::Status s = c->Sync(absl::Seconds(10));
  ASSERT_TRUE(s.ok()) << s;
  auto applied = device_.applied();
  ASSERT_EQ(applied.size(), n);
  for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(applied[i].second, i);
  EXPECT_EQ(Refused("bad_sequence"), 0);
}

TEST_F(SessionTest, DoorbellSeesFlushedDmaAndCompletionSeesMirroredResults) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < 4096; ++i) c->dma()[i] = static_cast<uint8_t>(i * 13);
  ASSERT_TRUE(c->FlushDma(0, 4096).ok());
  ASSERT_TRUE(c->MapFromDevice(65536, 4096).ok());
  ASSERT_TRUE(c->Write(0, TestDevice::kSrc, 8, 0).ok());
  ASSERT_TRUE(c->Write(0, TestDevice::kDst, 8, 65536).ok());
  ASSERT_TRUE(c->Write(0, TestDevice::kLen, 8, 4096).ok());
  ASSERT_TRUE(c->Write(0, TestDevice::kDoorbell, 8, 77).ok());
  absl::StatusOr<session::Completion> done = c->WaitCompletion(absl::Seconds(5));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->vector, 1);
  EXPECT_EQ(done->data, 77u);
  EXPECT_EQ(done->applied_mmio_seq, 4u);
  // Device results are in the compute mirror when the completion arrives.
  EXPECT_EQ(0, std::memcmp(c->dma() + 65536, c->dma(), 4096));
  EXPECT_EQ(*c->Read(0, TestDevice::kStatus, 8), 77u);
}

TEST_F(SessionTest, MirrorShowsDeviceStateAsOfLastRefresh) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Write(0, 0x40, 4, 0xabcd).ok());
  ASSERT_TRUE(c->Refresh(absl::Seconds(5)).ok());
  EXPECT_EQ(*c->Read(0, 0x40, 4), 0xabcdu);
  EXPECT_EQ(*c->Read(2, 0, 4), 0xeeeeeeeeu);
  EXPECT_EQ(c->Read(0, 4096, 4).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(SessionTest, OutOfBoundsWriteIsRefusedBeforeLeavingTheClient) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Write(0, 4096, 4, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(c->Write(3, 0, 4, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(c->FlushDma(c->dma_size() - 8, 16).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(device_.applied().empty());
}

TEST_F(SessionTest, WriteToReadOnlyBarIsRefusedCountedAndNeverApplied) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Write(2, 0, 4, 0x1234).ok());  // BAR2 is read-only on the agent
  ASSERT_TRUE(c->Write(0, 0x40, 4, 5).ok());
  absl::Status s = c->Sync(absl::Seconds(5));
  EXPECT_TRUE(s.ok()) << s;
  absl::Status next = c->Write(0, 0x48, 4, 6);  // the refusal surfaces on the next call
  EXPECT_EQ(next.code(), absl::StatusCode::kPermissionDenied) << next;
  EXPECT_EQ(Refused("read_only"), 1);
  auto applied = device_.applied();
  ASSERT_EQ(applied.size(), 1u);  // only the BAR0 write
  EXPECT_EQ(applied[0].first, 0x40u);
  uint8_t bar2[4];
  ASSERT_TRUE(device_.ReadBar(2, 0, 4, bar2).ok());
  EXPECT_EQ(bar2[0], 0xee);
}

TEST_F(SessionTest, FramesWithWrongKeyOrUnknownSessionAreRefusedAndTouchNothing) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  // A second endpoint that knows the session id but not its key.
  auto fabric = fabric::Fabric::Open(fabric::LoopbackConfig());
  ASSERT_TRUE(fabric.ok()) << fabric.status();
  auto rogue = (*fabric)->OpenEndpoint();
  ASSERT_TRUE(rogue.ok()) << rogue.status();
  auto peer = (*rogue)->InsertPeer(server_->fabric_address());
  ASSERT_TRUE(peer.ok());
  session::Frame f;
  f.type = session::FrameType::kKick;
  f.session_id = *session::ParseSessionId(ticket.session_id);
  f.arg0 = 1;
  auto bytes = session::EncodeFrame(f);
  ASSERT_TRUE((*rogue)->Send(*peer, std::string(bytes.begin(), bytes.end())).ok());
  f.session_id ^= 1;
  f.key = ticket.key.bytes();
  bytes = session::EncodeFrame(f);
  ASSERT_TRUE((*rogue)->Send(*peer, std::string(bytes.begin(), bytes.end())).ok());
  for (int i = 0; i < 50 && (Refused("bad_key") < 1 || Refused("stale_session") < 1); ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Refused("bad_key"), 1);
  EXPECT_EQ(Refused("stale_session"), 1);
  EXPECT_TRUE(device_.applied().empty());
}

TEST_F(SessionTest, ResumeWithWrongKeyOrBadGrantIsRefused) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  client::SessionTicket forged = ticket;
  forged.key = *session::SessionKey::Generate();
  EXPECT_EQ(client::SessionClient::Attach(forged, {}).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(client::ReserveSession(Endpoint(), nullptr, "g1", "wrong", "node-a").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(client::ReserveSession(Endpoint(), nullptr, "g1", "secret-token", "node-b").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_GE(Refused("bad_key"), 1);
  EXPECT_GE(Refused("bad_grant"), 2);
}

TEST_F(SessionTest, LinkDropReconnectsAndReplaysEveryWriteExactlyOnce) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(c->Write(0, 0x200 + (i % 8) * 8, 8, i).ok());
  ASSERT_TRUE(c->Flush().ok());
  c->BreakLinkForTesting();
  for (uint64_t i = 100; i < 200; ++i) ASSERT_TRUE(c->Write(0, 0x200 + (i % 8) * 8, 8, i).ok());
  absl::Status s = c->Sync(absl::Seconds(10));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GE(c->stats().reconnects, 1u);
  auto applied = device_.applied();
  ASSERT_EQ(applied.size(), 200u);
  for (uint64_t i = 0; i < 200; ++i) EXPECT_EQ(applied[i].second, i);
}

TEST_F(SessionTest, AgentRestartRecoversTheSessionFromItsCheckpoint) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  for (uint64_t i = 0; i < 50; ++i) ASSERT_TRUE(c->Write(0, 0x300, 8, i).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  StopServer();
  StartServer();  // same state dir and port; device outlives the agent
  ASSERT_EQ(server_->live_sessions(), 1u);
  for (uint64_t i = 50; i < 100; ++i) ASSERT_TRUE(c->Write(0, 0x300, 8, i).ok());
  absl::Status s = c->Sync(absl::Seconds(10));
  ASSERT_TRUE(s.ok()) << s;
  auto applied = device_.applied();
  ASSERT_EQ(applied.size(), 100u);
  for (uint64_t i = 0; i < 100; ++i) EXPECT_EQ(applied[i].second, i);
  EXPECT_GE(c->stats().reconnects, 1u);
}

TEST_F(SessionTest, PeerGonePastGraceIsTornDownOnBothEnds) {
  StopServer();
  StartServer(absl::Milliseconds(300));
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(server_->live_sessions(), 1u);
  c.reset();  // client vanishes without closing
  for (int i = 0; i < 100 && server_->live_sessions() > 0; ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(server_->live_sessions(), 0u);
  // The client side: a new attach with the old ticket is refused as stale.
  EXPECT_EQ(client::SessionClient::Attach(ticket, {}).status().code(), absl::StatusCode::kNotFound);
  // And an attached client whose agent disappears gives up after its grace.
  auto c2 = Attach();
  ASSERT_NE(c2, nullptr);
  StopServer();
  absl::Status s = c2->Sync(absl::Seconds(1));
  for (int i = 0; i < 20 && s.code() != absl::StatusCode::kFailedPrecondition; ++i) {
    ASSERT_TRUE(c2->Write(0, 0, 4, 1).ok() || true);
    s = c2->Sync(absl::Seconds(1));
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
}

// A workload's close detaches: the session stays for the pod's allocation
// and the next process (a restarted container) attaches with the same
// ticket; only CloseSession without detach (the plugin) ends it.
TEST_F(SessionTest, CloseDetachesAndOnlyThePluginEndsTheSession) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Write(0, 0, 4, 7).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  ASSERT_TRUE(c->Close().ok());
  EXPECT_EQ(server_->live_sessions(), 1u);
  EXPECT_EQ(c->Write(0, 0, 4, 1).code(), absl::StatusCode::kFailedPrecondition);
  for (int run = 0; run < 3; ++run) {
    auto again = client::SessionClient::Attach(ticket, {});
    ASSERT_TRUE(again.ok()) << again.status();
    ASSERT_TRUE((*again)->Write(0, 0, 4, 8 + run).ok());
    ASSERT_TRUE((*again)->Sync(absl::Seconds(5)).ok()) << "run " << run;
    ASSERT_TRUE((*again)->Close().ok());
  }
  ASSERT_TRUE(client::CloseSession(ticket, nullptr).ok());
  EXPECT_EQ(server_->live_sessions(), 0u);
  EXPECT_EQ(client::SessionClient::Attach(ticket, {}).status().code(), absl::StatusCode::kNotFound);
}

// A status probe of a session that has ended (the plugin's health check) is
// counted apart from refused attaches, so a metric of refusals does not read
// as restarts or attacks.
TEST_F(SessionTest, StatusProbesOfEndedSessionsAreNotCountedAsRefusals) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(client::CloseSession(ticket, nullptr).ok());
  auto stub = rpci::v1::SessionControl::NewStub(grpc::CreateChannel(Endpoint(), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    rpci::v1::SessionStatusRequest req;
    req.set_session_id(ticket.session_id);
    req.set_session_key(ticket.key.Bytes());
    rpci::v1::SessionStatusResponse resp;
    ASSERT_TRUE(stub->SessionStatus(&ctx, req, &resp).ok());
    EXPECT_FALSE(resp.live());
  }
  EXPECT_EQ(Refused("probe_closed_session"), 3);
  EXPECT_EQ(Refused("stale_session"), 0);
  // A real attach to the ended session is still a refusal.
  EXPECT_EQ(client::SessionClient::Attach(ticket, {}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Refused("stale_session"), 1);
}

// Between container runs the session is detached; it stays while its
// holder's status probes say the allocation still exists, and is reaped after
// the attach timeout once they stop.
TEST_F(SessionTest, ADetachedSessionLivesWhileItsHolderProbesIt) {
  StopServer();
  attach_timeout_ = absl::Milliseconds(400);
  StartServer();
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Close().ok());
  auto stub = rpci::v1::SessionControl::NewStub(grpc::CreateChannel(Endpoint(), grpc::InsecureChannelCredentials()));
  auto probe = [&] {
    grpc::ClientContext ctx;
    rpci::v1::SessionStatusRequest req;
    req.set_session_id(ticket.session_id);
    req.set_session_key(ticket.key.Bytes());
    rpci::v1::SessionStatusResponse resp;
    return stub->SessionStatus(&ctx, req, &resp).ok() && resp.live();
  };
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(probe()) << "probe " << i;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(server_->live_sessions(), 1u);
  absl::SleepFor(absl::Milliseconds(900));
  EXPECT_EQ(server_->live_sessions(), 0u);
}

}  // namespace
}  // namespace rpci::agent
