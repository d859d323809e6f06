// End-to-end session tests: the real session server and client over
// tcp;ofi_rxm on loopback, with gRPC control on a local port.
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <atomic>
#include <optional>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "agent/backends/emu_backend.h"
#include "agent/session/session_server.h"
#include "agent/session/testing/test_device.h"
#include "client/control_client.h"
#include "client/session_client.h"
#include "common/fabric/fabric.h"
#include "common/testing/exposition_format.h"
#include "common/testing/manual_clock.h"
#include "common/testing/temp_dir.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "session/bounds.h"
#include "session/frame_auth.h"
#include "session/wire.h"

namespace rpci::agent {
namespace {

using agent::testing::TestDevice;

// A device whose register write of kSlowValue blocks for `delay` (a long
// job), holding its session's worker.
class SlowDevice : public TestDevice {
 public:
  static constexpr uint64_t kSlowValue = 0x510e;
  explicit SlowDevice(absl::Duration delay) : delay_(delay) {}
  absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) override {
    if (value == kSlowValue) absl::SleepFor(delay_);
    return TestDevice::WriteRegister(bar, offset, width, value);
  }

 private:
  const absl::Duration delay_;
};

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_dir_ = ::rpci::testing::MakeTempDir("rpci-session");
    grants_.Upsert({"g1", "dev0", "node-a", "secret-token", absl::InfiniteFuture()});
    grants_.Upsert({"g-emu", "emu0", "node-a", "secret-token", absl::InfiniteFuture()});
    StartServer();
  }
  void TearDown() override { StopServer(); }

  // `second` stands in for the emu device ("emu0", grant "g-emu") when given.
  // Restarts the agent with `device` as its second device ("emu0", grant
  // "g-emu"). The returned cleanup stops it: hold it after `device` is
  // declared, so the server stops before the device goes.
  [[nodiscard]] auto ServeWith(SessionDevice* device) {
    StopServer();
    StartServer(absl::Seconds(10), device);
    return absl::MakeCleanup([this] { StopServer(); });
  }

  void StartServer(absl::Duration grace = absl::Seconds(10), SessionDevice* second = nullptr) {
    SessionServerOptions opts;
    opts.state_dir = second == nullptr ? state_dir_ : "";
    opts.metrics = &metrics_;
    opts.grace = grace;
    opts.attach_timeout = attach_timeout_;
    opts.throttle = throttle_;
    opts.clock = clock_;
    opts.fabric = fabric_;
    opts.spare_fabric = spare_fabric_;
    auto server = SessionServer::Create(opts, &grants_, {{"dev0", &device_}, {"emu0", second ? second : emu_.get()}});
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

  std::unique_ptr<client::SessionClient> Attach(client::SessionTicket* ticket_out = nullptr,
                                                const std::string& grant = "g1",
                                                absl::Duration heartbeat = client::ClientOptions().heartbeat) {
    auto ticket = client::ControlClient().Reserve(Endpoint(), {grant, "secret-token", "node-a"});
    EXPECT_TRUE(ticket.ok()) << ticket.status();
    if (!ticket.ok()) return nullptr;
    if (ticket_out) *ticket_out = *ticket;
    client::ClientOptions opts;
    opts.grace = absl::Seconds(5);
    opts.heartbeat = heartbeat;
    auto c = client::SessionClient::Attach(*ticket, opts);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Two sessions for the throttle tests: `flood` on g1 with its whole DMA
  // space mapped from the device (1 MiB pushed with each completion), and
  // `quiet` on g-emu.
  void AttachFloodAndQuiet(client::SessionTicket* flood_ticket, std::unique_ptr<client::SessionClient>* flood,
                           client::SessionTicket* quiet_ticket, std::unique_ptr<client::SessionClient>* quiet) {
    *flood = Attach(flood_ticket, "g1");
    *quiet = Attach(quiet_ticket, "g-emu");
    ASSERT_NE(*flood, nullptr);
    ASSERT_NE(*quiet, nullptr);
    ASSERT_TRUE((*flood)->MapFromDevice(0, (*flood)->dma_size()).ok());
  }

  // Attach, then one 4-byte write to BAR 0 the agent has applied (so the
  // agent has a connection to this client); null after a failure.
  std::unique_ptr<client::SessionClient> AttachAndWrite(client::SessionTicket* ticket, uint64_t offset,
                                                        uint64_t value) {
    auto c = Attach(ticket);
    if (c == nullptr) return nullptr;
    absl::Status s = c->Write(0, offset, 4, value);
    if (s.ok()) s = c->Sync(absl::Seconds(5));
    EXPECT_TRUE(s.ok()) << s;
    return s.ok() ? std::move(c) : nullptr;
  }

  // An endpoint of someone else's, connected to a session's endpoint on the
  // agent (its current one, or `address`).
  struct RogueEndpoint {
    std::unique_ptr<fabric::Fabric> fabric;
    std::unique_ptr<fabric::Endpoint> endpoint;
    fabric::PeerId peer = 0;
    absl::Status Send(const std::string& bytes) { return endpoint->Send(peer, bytes); }
  };
  RogueEndpoint Rogue(session::SessionId id, const std::string& address = "") {
    RogueEndpoint r;
    r.fabric = *fabric::Fabric::Open(fabric::LoopbackConfig());
    r.endpoint = *r.fabric->OpenEndpoint();
    r.peer = *r.endpoint->InsertPeer(address.empty() ? *server_->fabric_address(id) : address);
    return r;
  }

  // A client made by hand from the protocol's parts rather than
  // client::SessionClient, so a test sends exactly the frames it wants from
  // the attached endpoint, and reaches the agent's regions itself.
  struct HandClient {
    std::unique_ptr<fabric::Fabric> fabric;
    std::unique_ptr<fabric::Endpoint> endpoint;
    std::vector<std::vector<uint8_t>> buffers;
    std::vector<std::unique_ptr<fabric::MemoryRegion>> regions;
    std::optional<session::FrameChannel> frames;
    fabric::PeerId agent = 0;
    std::string agent_address;
    rpci::v1::Region anchor;  // the agent's, from the attach answer
    absl::Status Send(const std::string& bytes) { return endpoint->Send(agent, bytes); }
    // The next frame from the agent that authenticates, as its type.
    absl::StatusOr<session::FrameType> Receive() {
      absl::StatusOr<std::string> m = endpoint->Recv(absl::Seconds(5));
      if (!m.ok()) return m.status();
      auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(m->data()), m->size());
      absl::StatusOr<session::Frame> f = session::DecodeFrame(bytes);
      if (!f.ok()) return f.status();
      if (frames->Check(bytes, *f) != session::FrameChannel::Verdict::kOk) {
        return absl::UnauthenticatedError("agent frame does not authenticate");
      }
      return f->type;
    }
  };
  std::unique_ptr<HandClient> HandAttach(const client::SessionTicket& ticket) {
    auto h = std::make_unique<HandClient>();
    h->fabric = *fabric::Fabric::Open(fabric::LoopbackConfig());
    h->endpoint = *h->fabric->OpenEndpoint();
    rpci::v1::OpenSessionRequest req;
    auto add = [&](session::RegionKind kind, uint16_t index, size_t size) {
      h->buffers.emplace_back(size, 0);
      h->regions.push_back(*h->endpoint->RegisterMemory(h->buffers.back().data(), size,
                                                        fabric::kRemoteRead | fabric::kRemoteWrite));
      rpci::v1::Region* r = req.add_client_regions();
      r->set_kind(static_cast<rpci::v1::RegionKind>(kind));
      r->set_index(index);
      r->set_address(h->regions.back()->remote().address);
      r->set_size(size);
      r->set_key(h->regions.back()->remote().key);
      r->set_writable(true);
    };
    h->buffers.reserve(ticket.bars.size() + 2);
    for (const client::BarMirror& b : ticket.bars) add(session::RegionKind::kBar, b.index, b.size);
    add(session::RegionKind::kDma, 0, ticket.dma_size);
    add(session::RegionKind::kCompletionRing, 0, session::RingRegionSize(64, session::kCompletionEntrySize));
    req.set_client_fabric_address(h->endpoint->address());
    auto attached = client::ControlClient().Attach(ticket, std::move(req));
    EXPECT_TRUE(attached.ok()) << attached.status();
    if (!attached.ok()) return nullptr;
    h->frames = *session::FrameChannel::Create(ticket.key, attached->nonce, ticket.session_id,
                                               session::FrameChannel::Side::kClient);
    h->agent_address = attached->response.agent_fabric_address();
    for (const rpci::v1::Region& r : attached->response.agent_regions()) {
      if (r.kind() == rpci::v1::REGION_KIND_ANCHOR) h->anchor = r;
    }
    h->agent = *h->endpoint->InsertPeer(h->agent_address);
    return h;
  }
  client::SessionTicket Reserve(const std::string& grant = "g1") {
    auto ticket = client::ControlClient().Reserve(Endpoint(), {grant, "secret-token", "node-a"});
    EXPECT_TRUE(ticket.ok()) << ticket.status();
    return ticket.value_or(client::SessionTicket{});
  }

  void WaitForRefused(const std::map<std::string, double>& want) {
    for (int i = 0; i < 100; ++i) {
      bool all = true;
      for (const auto& [reason, n] : want) all = all && Refused(reason) >= n;
      if (all) return;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  // A metric's value in the agent's exposition; -1 when it does not parse.
  // Writes the values from .. to-1 to BAR 0's eight registers at 0x200 in
  // turn, flushing and breaking the link before `drop`, then syncs.
  static void WriteAcrossALinkDrop(client::SessionClient& c, uint64_t from, uint64_t drop, uint64_t to) {
    for (uint64_t i = from; i < drop; ++i) ASSERT_TRUE(c.Write(0, 0x200 + (i % 8) * 8, 8, i).ok());
    ASSERT_TRUE(c.Flush().ok());
    c.BreakLinkForTesting();
    for (uint64_t i = drop; i < to; ++i) ASSERT_TRUE(c.Write(0, 0x200 + (i % 8) * 8, 8, i).ok());
    absl::Status s = c.Sync(absl::Seconds(10));
    ASSERT_TRUE(s.ok()) << s;
  }

  // The test device applied the values 0 .. n-1, each once, in order.
  void ExpectAppliedInOrder(uint64_t n) {
    auto applied = device_.applied();
    ASSERT_EQ(applied.size(), n);
    for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(applied[i].second, i) << "write " << i;
  }

  double Metric(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    auto parsed = rpci::testing::CheckExpositionFormat(metrics_.Render());
    if (!parsed.ok()) return -1;
    auto v = parsed->Value(name, labels);
    return v.ok() ? *v : 0;
  }
  double Scrubs(const std::string& result) { return Metric("rpci_agent_device_scrubs_total", {{"result", result}}); }
  double Completions() { return Metric("rpci_session_completions_total"); }
  double Refused(const std::string& reason) { return Metric("rpci_session_refused_total", {{"reason", reason}}); }
  // Every refusal the agent counted, whatever its reason.
  double RefusedAll() {
    std::istringstream lines(metrics_.Render());
    double sum = 0;
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("rpci_session_refused_total{", 0) == 0) sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
  }
  // The agent's endpoint as a challenge of `ticket`'s session names it
  // (empty: none named).
  std::string EndpointNamedByChallenge(const client::SessionTicket& ticket, bool status_probe = false) {
    client::ControlClient control;
    std::unique_ptr<client::ControlClient::PendingChallenge> c = control.StartChallenge(ticket, status_probe);
    EXPECT_TRUE(c->Finish().ok());
    return c->agent_fabric_address();
  }
  // Restarts the agent keeping a session fabric open ahead of reservations,
  // as rpci-agent serve does by default.
  void ServeWithSpareFabric() {
    StopServer();
    spare_fabric_ = true;
    StartServer();
  }

  // Closes `ticket`'s session as the plugin does: it must answer well within
  // 3 s whatever the fabric's op_timeout, end the session and leave `device`
  // scrubbed. `whose` names the client in the log line.
  void ExpectPromptCleanClose(const client::SessionTicket& ticket, const std::string& device,
                              const std::string& whose) {
    const absl::Time start = absl::Now();
    ASSERT_TRUE(client::ControlClient().Close(ticket).ok());
    const absl::Duration took = absl::Now() - start;
    std::cerr << "close of " << whose << " session took " << absl::FormatDuration(took) << "\n";
    EXPECT_LT(took, absl::Seconds(3)) << "op_timeout is " << absl::FormatDuration(fabric_.op_timeout);
    EXPECT_EQ(server_->live_sessions(), 0u);
    EXPECT_TRUE(server_->DeviceClean(device).ok());
  }

  std::string state_dir_;
  absl::Duration attach_timeout_ = absl::Minutes(10);
  bool spare_fabric_ = false;  // SessionServerOptions::spare_fabric
  ThrottleOptions throttle_;
  Clock* clock_ = Clock::Real();
  fabric::FabricConfig fabric_ = fabric::LoopbackConfig();
  int port_ = 0;
  MetricsRegistry metrics_;
  GrantTable grants_;
  TestDevice device_;
  std::unique_ptr<EmuBackend> emu_ = *EmuBackend::Create(1 << 16);
  std::unique_ptr<SessionServer> server_;
  std::unique_ptr<grpc::Server> grpc_;
};

TEST_F(SessionTest, RegisterWritesReachTheDeviceInProgramOrder) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  for (uint64_t i = 0; i < 600; ++i) ASSERT_TRUE(c->Write(0, (i % 16) * 8, 8, i).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  ExpectAppliedInOrder(600);
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
  ExpectAppliedInOrder(n);
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

// The fabric the server opened ahead of a reservation is the one its session
// gets (no opening on the attach's path); the next one is opened for the next
// reservation, and a session on it works end to end.
TEST_F(SessionTest, AReservationTakesTheFabricOpenedAheadAndTheNextIsOpenedForTheNext) {
  spare_fabric_ = true;
  StopServer();
  StartServer();
  auto spare = [&] {
    absl::StatusOr<std::string> a = server_->spare_fabric_address();
    for (int i = 0; i < 500 && !a.ok(); ++i) {
      absl::SleepFor(absl::Milliseconds(10));
      a = server_->spare_fabric_address();
    }
    return a;
  };
  absl::StatusOr<std::string> ahead = spare();
  ASSERT_TRUE(ahead.ok()) << ahead.status();
  auto first = client::ControlClient().Reserve(Endpoint(), {"g1", "secret-token", "node-a"});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(server_->fabric_address(first->session_id).value_or(""), *ahead);
  absl::StatusOr<std::string> next = spare();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_NE(*next, *ahead);
  auto second = client::ControlClient().Reserve(Endpoint(), {"g-emu", "secret-token", "node-a"});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(server_->fabric_address(second->session_id).value_or(""), *next);

  client::ClientOptions opts;
  opts.grace = absl::Seconds(5);
  auto c = client::SessionClient::Attach(*first, opts);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Write(0, TestDevice::kDoorbell, 8, 5).ok());
  absl::StatusOr<session::Completion> done = (*c)->WaitCompletion(absl::Seconds(5));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->data, 5u);
}

// Batches small enough travel in the kick, larger ones through the ring;
// mixed, every write still reaches the device once and in order.
TEST_F(SessionTest, InlineAndRingKicksMixedApplyEveryWriteOnceInOrder) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  uint64_t v = 0;
  for (size_t batch : {size_t{3}, session::kMaxInlineWrites, session::kMaxInlineWrites + 1, size_t{1}, size_t{200}}) {
    for (size_t i = 0; i < batch; ++i, ++v) ASSERT_TRUE(c->Write(0, 0x200 + (v % 32) * 8, 8, v).ok()) << v;
    ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  }
  ExpectAppliedInOrder(v);
  EXPECT_EQ(c->acked_seq(), v);
  EXPECT_EQ(Refused("bad_sequence"), 0);
  EXPECT_EQ(Refused("malformed"), 0);
}

// A completion delivers the device's register changes (inline patches when
// few, an RMA of the changed span when many) and then completions, in order.
TEST_F(SessionTest, CompletionsCarryEveryRegisterChangeInlineOrByRma) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  for (uint64_t regs : {uint64_t{4}, uint64_t{100}}) {
    for (uint64_t r = 0; r < regs; ++r) ASSERT_TRUE(c->Write(0, 0x200 + r * 32, 8, regs * 1000 + r).ok());
    ASSERT_TRUE(c->Write(0, TestDevice::kDoorbell, 8, regs).ok());
    absl::StatusOr<session::Completion> done = c->WaitCompletion(absl::Seconds(5));
    ASSERT_TRUE(done.ok()) << done.status();
    EXPECT_EQ(done->data, regs);
    for (uint64_t r = 0; r < regs; ++r) EXPECT_EQ(*c->Read(0, 0x200 + r * 32, 8), regs * 1000 + r) << r;
    EXPECT_EQ(*c->Read(0, TestDevice::kStatus, 8), regs);
  }
}

// Issue 16: a reader of the BAR mirror never sees half of a push. Every
// job rewrites 100 registers to one value (an RMA of the changed span) or 8
// (inline patches); a reader hammers snapshots meanwhile and finds them
// equal in every snapshot.
TEST_F(SessionTest, MirrorSnapshotsNeverTearWhilePushesLand) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  constexpr uint64_t kRegs = 100, kStride = 32;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> snapshots{0}, torn{0};
  std::thread reader([&] {
    std::vector<uint8_t> snap(kRegs * kStride);
    while (!stop.load()) {
      if (!c->ReadMirror(0, 0x200, absl::MakeSpan(snap)).ok()) continue;
      // After job a: registers 0..7 hold a, the rest a (even job) or a - 1
      // (odd job: only the first 8 were rewritten).
      uint64_t a = 0;
      std::memcpy(&a, snap.data(), 8);
      for (uint64_t r = 1; r < kRegs; ++r) {
        uint64_t v = 0;
        std::memcpy(&v, snap.data() + r * kStride, 8);
        if (v != (r < 8 || a % 2 == 0 ? a : a - 1)) {
          torn.fetch_add(1);
          break;
        }
      }
      snapshots.fetch_add(1);
    }
  });
  absl::Cleanup join = [&] {
    stop = true;
    reader.join();
  };
  for (uint64_t job = 1; job <= 200; ++job) {
    // Even jobs rewrite all 100 registers (RMA), odd ones the first 8 (inline).
    const uint64_t regs = job % 2 == 0 ? kRegs : 8;
    for (uint64_t r = 0; r < regs; ++r) ASSERT_TRUE(c->Write(0, 0x200 + r * kStride, 8, job).ok());
    ASSERT_TRUE(c->Write(0, TestDevice::kDoorbell, 8, job).ok());
    ASSERT_TRUE(c->WaitCompletion(absl::Seconds(5)).ok());
  }
  std::move(join).Invoke();
  EXPECT_GT(snapshots.load(), 0u);
  EXPECT_EQ(torn.load(), 0u) << "of " << snapshots.load() << " snapshots";
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

TEST_F(SessionTest, FramesWithAForeignMacOrUnknownSessionAreRefusedAndTouchNothing) {
  client::SessionTicket ticket = Reserve();
  auto h = HandAttach(ticket);
  ASSERT_NE(h, nullptr);
  // From the attached endpoint itself: a frame sealed under a key of its own,
  // and one naming another session (each session has its own endpoint).
  auto guess = *session::FrameChannel::Create(*session::SessionKey::Generate(), *session::NewNonce(),
                                              ticket.session_id, session::FrameChannel::Side::kClient);
  ASSERT_TRUE(h->Send(guess.Seal(session::FrameType::kKick, 0, 0)).ok());
  auto other = *session::FrameChannel::Create(ticket.key, *session::NewNonce(),
                                              session::SessionId(ticket.session_id.value() ^ 1),
                                              session::FrameChannel::Side::kClient);
  ASSERT_TRUE(h->Send(other.Seal(session::FrameType::kKick, 0, 0)).ok());
  WaitForRefused({{"bad_mac", 1}, {"stale_session", 1}});
  EXPECT_EQ(Refused("bad_mac"), 1);
  EXPECT_EQ(Refused("stale_session"), 1);
  EXPECT_TRUE(device_.applied().empty());
  // Never answered; the session's own next frame still is.
  ASSERT_TRUE(h->Send(h->frames->Seal(session::FrameType::kKick, 0, 0)).ok());
  EXPECT_EQ(h->Receive().value_or(session::FrameType::kError), session::FrameType::kEvent);
}

TEST_F(SessionTest, ACapturedFrameReplayedFromAnotherEndpointIsRefused) {
  client::SessionTicket ticket;
  auto c = AttachAndWrite(&ticket, 0x40, 1);
  ASSERT_NE(c, nullptr);
  const std::string captured = c->LastFrameForTesting();  // the kick, as a wiretap saw it
  ASSERT_EQ(captured.size(), session::kFrameSize + session::kMmioEntrySize);  // its one entry inline
  auto rogue = Rogue(ticket.session_id);
  ASSERT_TRUE(rogue.Send(captured).ok());
  WaitForRefused({{"foreign_peer", 1}});
  EXPECT_EQ(Refused("foreign_peer"), 1);
  EXPECT_EQ(device_.applied().size(), 1u);
  // The session itself carries on.
  ASSERT_TRUE(c->Write(0, 0x44, 4, 2).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  EXPECT_EQ(device_.applied().size(), 2u);
}

// A frame intercepted before it reached the agent, with a MAC and counter
// the agent has never seen, sent from the interceptor's endpoint: refused
// without spending its counter, so the client's own copy still counts.
TEST_F(SessionTest, AnAuthenticFrameFromAnotherEndpointIsRefusedAndSpendsNothing) {
  client::SessionTicket ticket = Reserve();
  auto h = HandAttach(ticket);
  ASSERT_NE(h, nullptr);
  const std::string intercepted = h->frames->Seal(session::FrameType::kKick, 0, 0);
  auto rogue = Rogue(ticket.session_id);
  ASSERT_TRUE(rogue.Send(intercepted).ok());
  WaitForRefused({{"foreign_peer", 1}});
  EXPECT_EQ(Refused("foreign_peer"), 1);
  EXPECT_EQ(rogue.endpoint->Recv(absl::Milliseconds(200)).status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(h->Send(intercepted).ok());
  EXPECT_EQ(h->Receive().value_or(session::FrameType::kError), session::FrameType::kEvent);
  EXPECT_EQ(Refused("replay"), 0);
}

TEST_F(SessionTest, AFrameReplayedFromTheAttachedEndpointIsRefused) {
  client::SessionTicket ticket = Reserve();
  auto h = HandAttach(ticket);
  ASSERT_NE(h, nullptr);
  const std::string kick = h->frames->Seal(session::FrameType::kKick, 0, 0);
  ASSERT_TRUE(h->Send(kick).ok());
  EXPECT_EQ(h->Receive().value_or(session::FrameType::kError), session::FrameType::kEvent);
  ASSERT_TRUE(h->Send(kick).ok());
  WaitForRefused({{"replay", 1}});
  EXPECT_EQ(Refused("replay"), 1);
  EXPECT_EQ(h->endpoint->Recv(absl::Milliseconds(200)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(SessionTest, AFrameOfAnEarlierAttachIsRefusedAfterTheClientReconnects) {
  client::SessionTicket ticket = Reserve();
  auto first = HandAttach(ticket);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->Send(first->frames->Seal(session::FrameType::kHeartbeat, 0, 0)).ok());
  const std::string captured = first->frames->Seal(session::FrameType::kKick, 0, 0);
  auto second = HandAttach(ticket);  // the client reconnected: new nonce, keys, endpoints
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second->agent_address, first->agent_address);
  // Its counter is fresh for the new attach, but its MAC is of the old keys.
  ASSERT_TRUE(second->Send(captured).ok());
  WaitForRefused({{"bad_mac", 1}});
  EXPECT_EQ(Refused("bad_mac"), 1);
  // The first attach's endpoint on the agent is closed: nothing reaches it.
  EXPECT_FALSE(first->Send(captured).ok());
  EXPECT_TRUE(device_.applied().empty());
}

TEST_F(SessionTest, AForgedMacIsRefused) {
  client::SessionTicket ticket = Reserve();
  auto h = HandAttach(ticket);
  ASSERT_NE(h, nullptr);
  std::string forged = h->frames->Seal(session::FrameType::kKick, 0, 0);
  forged[16] = 0x7f;  // a counter far ahead, to get past the replay check
  forged[session::kFrameMacOffset + 3] ^= 0x40;
  ASSERT_TRUE(h->Send(forged).ok());
  WaitForRefused({{"bad_mac", 1}});
  EXPECT_EQ(Refused("bad_mac"), 1);
  EXPECT_EQ(h->endpoint->Recv(absl::Milliseconds(200)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(SessionTest, AVersionOneFrameGetsAClearRefusal) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  // Version 1: magic, version 1, kick, session id, then the key in clear.
  std::string v1(72, '\0');
  const uint8_t header[8] = {0x52, 0x43, 0x46, 0x52, 1, 0, 1, 0};
  std::memcpy(v1.data(), header, 8);
  const uint64_t id = ticket.session_id.value();
  std::memcpy(v1.data() + 8, &id, 8);
  std::memcpy(v1.data() + 16, ticket.key.bytes().data(), 32);
  auto rogue = Rogue(ticket.session_id);
  ASSERT_TRUE(rogue.Send(v1).ok());
  WaitForRefused({{"old_version", 1}});
  EXPECT_EQ(Refused("old_version"), 1);
  EXPECT_TRUE(device_.applied().empty());
}

TEST_F(SessionTest, APreviousAttachsMemoryKeysNoLongerReadOrWrite) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  const session::RegionDesc dma = *session::FindRegion(c->agent_regions(), session::RegionKind::kDma);
  auto rogue = Rogue(ticket.session_id);
  std::vector<uint8_t> buf(64, 0x5a);
  auto mr = *rogue.endpoint->RegisterMemory(buf.data(), buf.size(), fabric::kLocalOnly);
  // While attached, the key reaches the session's DMA space (it is the capability).
  ASSERT_TRUE(rogue.endpoint->Write(rogue.peer, {mr.get(), 0, 64, dma.address, dma.key}).ok());
  c->BreakLinkForTesting();
  ASSERT_TRUE(c->Write(0, 0x40, 4, 1).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());  // re-attached: new registrations, new endpoint
  EXPECT_FALSE(rogue.endpoint->Write(rogue.peer, {mr.get(), 0, 64, dma.address, dma.key}).ok());
  EXPECT_FALSE(rogue.endpoint->Read(rogue.peer, {mr.get(), 0, 64, dma.address, dma.key}).ok());
  // Nor through the session's new endpoint.
  auto again = Rogue(ticket.session_id);
  auto again_mr = *again.endpoint->RegisterMemory(buf.data(), buf.size(), fabric::kLocalOnly);
  EXPECT_FALSE(again.endpoint->Write(again.peer, {again_mr.get(), 0, 64, dma.address, dma.key}).ok());
  const session::RegionDesc now = *session::FindRegion(c->agent_regions(), session::RegionKind::kDma);
  ASSERT_TRUE(again.endpoint->Read(again.peer, {again_mr.get(), 0, 64, now.address, now.key}).ok());
  ASSERT_TRUE(c->Close().ok());  // detached: nothing of the attach is reachable
  EXPECT_FALSE(again.endpoint->Write(again.peer, {again_mr.get(), 0, 64, now.address, now.key}).ok());
  EXPECT_FALSE(again.endpoint->Read(again.peer, {again_mr.get(), 0, 64, now.address, now.key}).ok());
  EXPECT_EQ(std::count(device_.dma_space(), device_.dma_space() + 64, 0x5a), 64);  // only the first write
}

// Each session has its own fabric domain: a key is valid only there. Session
// B's own peer, holding session A's (address, key), reaches nothing of A's
// through B's endpoint (with one shared domain it would: the key is the only
// check), while B's own keys work.
TEST_F(SessionTest, AKeyOfOneSessionDoesNothingFromAnotherSessionsPeer) {
  client::SessionTicket ticket_a;
  auto a = Attach(&ticket_a);
  ASSERT_NE(a, nullptr);
  std::memset(a->dma(), 0x11, 64);
  ASSERT_TRUE(a->FlushDma(0, 64).ok());
  const session::RegionDesc a_dma = *session::FindRegion(a->agent_regions(), session::RegionKind::kDma);
  auto b = HandAttach(Reserve("g-emu"));
  ASSERT_NE(b, nullptr);
  std::vector<uint8_t> buf(64, 0x77);
  auto mr = *b->endpoint->RegisterMemory(buf.data(), buf.size(), fabric::kLocalOnly);
  EXPECT_FALSE(b->endpoint->Write(b->agent, {mr.get(), 0, 64, a_dma.address, a_dma.key}).ok());
  EXPECT_EQ(std::count(device_.dma_space(), device_.dma_space() + 64, 0x11), 64);
  // A fresh connection from B's side (tcp;ofi_rxm drops one after a refusal).
  auto b_again = Rogue(session::SessionId(0), b->agent_address);
  auto again_mr = *b_again.endpoint->RegisterMemory(buf.data(), buf.size(), fabric::kLocalOnly);
  EXPECT_FALSE(b_again.endpoint->Read(b_again.peer, {again_mr.get(), 0, 64, a_dma.address, a_dma.key}).ok());
  EXPECT_EQ(std::count(buf.begin(), buf.end(), 0x11), 0);
  // B's own anchor, through B's endpoint, is readable: the path works.
  auto b_check = Rogue(session::SessionId(0), b->agent_address);
  auto check_mr = *b_check.endpoint->RegisterMemory(buf.data(), buf.size(), fabric::kLocalOnly);
  EXPECT_TRUE(b_check.endpoint->Read(b_check.peer, {check_mr.get(), 0, 64, b->anchor.address(), b->anchor.key()}).ok());
  EXPECT_EQ(std::memcmp(buf.data(), "RPCIANCH", 8), 0);
  ASSERT_TRUE(a->Write(0, 0x40, 4, 1).ok());  // A carries on
  ASSERT_TRUE(a->Sync(absl::Seconds(5)).ok());
}

// The attach answer names the session's own endpoint: two sessions never
// share one, and a re-attach gets a fresh one.
TEST_F(SessionTest, EachSessionHasItsOwnEndpointAndEachAttachAFreshOne) {
  client::SessionTicket ticket_a = Reserve(), ticket_b = Reserve("g-emu");
  auto a = HandAttach(ticket_a);
  auto b = HandAttach(ticket_b);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  EXPECT_NE(a->agent_address, b->agent_address);
  EXPECT_EQ(a->agent_address, *server_->fabric_address(ticket_a.session_id));
  auto a_again = HandAttach(ticket_a);
  ASSERT_NE(a_again, nullptr);
  EXPECT_NE(a_again->agent_address, a->agent_address);
  EXPECT_EQ(a_again->agent_address, *server_->fabric_address(ticket_a.session_id));
  // Each answers its own client on its own endpoint.
  ASSERT_TRUE(a_again->Send(a_again->frames->Seal(session::FrameType::kKick, 0, 0)).ok());
  ASSERT_TRUE(b->Send(b->frames->Seal(session::FrameType::kKick, 0, 0)).ok());
  EXPECT_EQ(a_again->Receive().value_or(session::FrameType::kError), session::FrameType::kEvent);
  EXPECT_EQ(b->Receive().value_or(session::FrameType::kError), session::FrameType::kEvent);
}

// Where an attach's time went is recorded by the client (bench:session
// reports it) and logged by the agent for its own part.
TEST_F(SessionTest, AnAttachReportsItsStepsOnBothSides) {
  std::ostringstream log;
  Logger::SetSink(&log);
  auto restore_log = absl::MakeCleanup([] { Logger::SetSink(&std::cerr); });
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  const client::AttachSteps steps = c->stats().last_attach;
  EXPECT_GT(steps.endpoint, absl::ZeroDuration());
  EXPECT_GT(steps.open_rpc, absl::ZeroDuration());
  EXPECT_GT(steps.anchor, absl::ZeroDuration());
  EXPECT_GE(steps.total,
            steps.fabric + steps.endpoint + steps.challenge + steps.open_rpc + steps.anchor + steps.first_frame);
  std::istringstream lines(log.str());
  nlohmann::json attached;
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("msg", "") == "session attached") attached = j;
  }
  ASSERT_TRUE(attached.is_object()) << log.str();
  EXPECT_GE(attached.value("wait_endpoint_us", -1), 0);
  EXPECT_GE(attached.value("register_us", -1), 0);
  EXPECT_GT(attached.value("push_us", -1), 0) << "a new client gets its mirrors pushed";
}

// A challenge the client stops waiting for is cancelled; the next one works,
// and one for a session the agent does not have is NOT_FOUND.
TEST_F(SessionTest, ADroppedChallengeIsCancelledAndTheNextOneAnswers) {
  client::SessionTicket ticket = Reserve();
  client::ControlClient control;
  for (int i = 0; i < 5; ++i) control.StartChallenge(ticket);
  EXPECT_TRUE(control.StartChallenge(ticket)->Finish().ok());
  client::SessionTicket unknown = ticket;
  unknown.session_id = *session::SessionId::Random();
  EXPECT_EQ(control.StartChallenge(unknown)->Finish().status().code(), absl::StatusCode::kNotFound);
}

// After teardown the session's domain is closed: its (address, key) pairs
// do nothing, through its old endpoint or the next session's on the device.
TEST_F(SessionTest, APreviousSessionsMemoryKeysDoNothingAfterTeardown) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  const session::RegionDesc dma = *session::FindRegion(c->agent_regions(), session::RegionKind::kDma);
  const std::string old_address = *server_->fabric_address(ticket.session_id);
  auto rogue = Rogue(ticket.session_id);
  std::vector<uint8_t> buf(64, 0x5a);
  auto mr = *rogue.endpoint->RegisterMemory(buf.data(), buf.size(), fabric::kLocalOnly);
  ASSERT_TRUE(rogue.endpoint->Write(rogue.peer, {mr.get(), 0, 64, dma.address, dma.key}).ok());
  ASSERT_TRUE(client::ControlClient().Close(ticket).ok());  // the plugin ends the session
  c.reset();
  client::SessionTicket next_ticket;
  auto next = Attach(&next_ticket);  // the next tenant of the device
  ASSERT_NE(next, nullptr);
  auto old = Rogue(session::SessionId(0), old_address);
  auto old_mr = *old.endpoint->RegisterMemory(buf.data(), buf.size(), fabric::kLocalOnly);
  EXPECT_FALSE(old.endpoint->Write(old.peer, {old_mr.get(), 0, 64, dma.address, dma.key}).ok());
  EXPECT_FALSE(old.endpoint->Read(old.peer, {old_mr.get(), 0, 64, dma.address, dma.key}).ok());
  auto through_next = Rogue(next_ticket.session_id);
  auto next_mr = *through_next.endpoint->RegisterMemory(buf.data(), buf.size(), fabric::kLocalOnly);
  EXPECT_FALSE(through_next.endpoint->Write(through_next.peer, {next_mr.get(), 0, 64, dma.address, dma.key}).ok());
  EXPECT_EQ(std::count(device_.dma_space(), device_.dma_space() + 64, 0x5a), 0);  // scrubbed, never rewritten
}

TEST_F(SessionTest, TheNextTenantSeesOnlyResetRegistersAndZeroedDma) {
  client::SessionTicket ticket_a;
  auto a = Attach(&ticket_a, "g-emu");
  ASSERT_NE(a, nullptr);
  std::memset(a->dma(), 0xa5, a->dma_size());
  ASSERT_TRUE(a->FlushDma(0, a->dma_size()).ok());
  ASSERT_TRUE(a->Write(0, agent::emu::kRegScratch, 4, 0xdeadbeef).ok());
  ASSERT_TRUE(a->Write(0, agent::emu::kRegIntMask, 4, agent::emu::kIntCompletion).ok());
  ASSERT_TRUE(a->Refresh(absl::Seconds(5)).ok());
  ASSERT_EQ(*a->Read(0, agent::emu::kRegScratch, 4), 0xdeadbeefu);
  // The workload's close detaches; the plugin ends the allocation's session.
  ASSERT_TRUE(a->Close().ok());
  ASSERT_TRUE(client::ControlClient().Close(ticket_a).ok());
  EXPECT_TRUE(server_->DeviceClean("emu0").ok());

  auto b = Attach(nullptr, "g-emu");
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->InvalidateDma(0, b->dma_size()).ok());
  EXPECT_EQ(std::count(b->dma(), b->dma() + b->dma_size(), 0), static_cast<long>(b->dma_size()));
  ASSERT_TRUE(b->Refresh(absl::Seconds(5)).ok());
  EXPECT_EQ(*b->Read(0, agent::emu::kRegScratch, 4), 0u);
  EXPECT_EQ(*b->Read(0, agent::emu::kRegIntMask, 4), 0u);
  EXPECT_EQ(*b->Read(0, agent::emu::kRegDeviceId, 4), agent::emu::kDeviceIdValue);
  EXPECT_EQ(Scrubs("clean"), 1);
}

TEST_F(SessionTest, ResumeWithWrongKeyOrBadGrantIsRefused) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  client::SessionTicket forged = ticket;
  forged.key = *session::SessionKey::Generate();
  EXPECT_EQ(client::SessionClient::Attach(forged, {}).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(client::ControlClient().Status(forged)->live, false);
  client::ControlClient no_wait({nullptr, absl::ZeroDuration()});
  EXPECT_EQ(no_wait.Reserve(Endpoint(), {"g1", "wrong", "node-a"}).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(no_wait.Reserve(Endpoint(), {"g1", "secret-token", "node-b"}).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_GE(Refused("bad_proof"), 2);
  EXPECT_GE(Refused("bad_grant"), 2);
}

TEST_F(SessionTest, LinkDropReconnectsAndReplaysEveryWriteExactlyOnce) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  ASSERT_NO_FATAL_FAILURE(WriteAcrossALinkDrop(*c, 0, 100, 200));
  EXPECT_GE(c->stats().reconnects, 1u);
  ExpectAppliedInOrder(200);
}

// After an attach, the client opens the process's next session endpoint
// ahead (its heartbeat thread; a client going away waits for it): the next
// attach and a re-attach take it instead of opening one on their path, and
// the re-attach still replays every write exactly once. A client told not
// to opens its own.
TEST_F(SessionTest, AnAttachOrReattachTakesTheEndpointOpenedAheadAndReplaysEveryWriteOnce) {
  auto attach_and_end = [&] {
    client::SessionTicket other;
    Attach(&other, "g-emu").reset();  // its client opened the next endpoint before it went
    ASSERT_TRUE(client::ControlClient().Close(other).ok());
  };
  attach_and_end();
  client::SessionTicket ticket;
  auto c = AttachAndWrite(&ticket, 0x200, 0);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->stats().last_attach.endpoint_ahead);
  attach_and_end();  // one is open (or being opened) again when it ends
  ASSERT_NO_FATAL_FAILURE(WriteAcrossALinkDrop(*c, 1, 50, 100));  // 0 went with the attach
  EXPECT_EQ(c->stats().reconnects, 1u);
  EXPECT_TRUE(c->stats().last_attach.endpoint_ahead);
  ExpectAppliedInOrder(100);
  c.reset();
  auto ticket_b = client::ControlClient().Reserve(Endpoint(), {"g-emu", "secret-token", "node-a"});
  ASSERT_TRUE(ticket_b.ok()) << ticket_b.status();
  client::ClientOptions own;
  own.endpoint_ahead = false;
  auto b = client::SessionClient::Attach(*ticket_b, own);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE((*b)->stats().last_attach.endpoint_ahead);
}

// A session's first attach: the challenge names the agent's endpoint
// adopted at the reservation, the client dials it before its attach RPC and
// the agent's push finds that connection; the dial is no refused frame.
// Once an attach has used the endpoint, challenges name none (a re-attach
// gets a fresh endpoint), as an agent without the field never does: the
// client then connects as before. A status probe is told no endpoint.
TEST_F(SessionTest, AFirstAttachDialsTheEndpointTheChallengeNamesAndAReattachIsToldNone) {
  ServeWithSpareFabric();
  client::SessionTicket ticket = Reserve();
  const std::string adopted = *server_->fabric_address(ticket.session_id);
  EXPECT_EQ(EndpointNamedByChallenge(ticket), adopted);
  EXPECT_EQ(EndpointNamedByChallenge(ticket, /*status_probe=*/true), "");
  client::ClientOptions opts;
  opts.grace = absl::Seconds(5);
  auto c = client::SessionClient::Attach(ticket, opts);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->stats().last_attach.dialled);
  for (uint64_t i = 0; i < 50; ++i) ASSERT_TRUE((*c)->Write(0, 0x200 + (i % 8) * 8, 8, i).ok());
  ASSERT_TRUE((*c)->Sync(absl::Seconds(5)).ok());
  EXPECT_EQ(EndpointNamedByChallenge(ticket), "");
  EXPECT_EQ(RefusedAll(), 0) << metrics_.Render();
  ASSERT_NO_FATAL_FAILURE(WriteAcrossALinkDrop(**c, 50, 100, 150));
  EXPECT_EQ((*c)->stats().reconnects, 1u);
  EXPECT_FALSE((*c)->stats().last_attach.dialled);
  EXPECT_NE(*server_->fabric_address(ticket.session_id), adopted);
  ExpectAppliedInOrder(150);
}

// A new attach takes the anchor record the agent wrote into the client's
// anchor region with the mirrors (no RMA read: a process's first read on the
// connection grew ofi_rxm's pool, 1-1.5 ms); a resuming attach, which the
// agent does not push to in its attach, reads it as before. Both apply every
// write once, in order.
TEST_F(SessionTest, AnAttachTakesTheAnchorTheAgentPushedAndAResumingAttachReadsIt) {
  ServeWithSpareFabric();
  client::SessionTicket ticket = Reserve();
  client::ClientOptions opts;
  opts.grace = absl::Seconds(5);
  auto c = client::SessionClient::Attach(ticket, opts);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->stats().last_attach.anchor_pushed);
  EXPECT_EQ((*c)->Read(2, 0, 4).value_or(0), 0xeeeeeeeeu);  // the mirrors came in the same push
  for (uint64_t i = 0; i < 50; ++i) ASSERT_TRUE((*c)->Write(0, 0x200 + (i % 8) * 8, 8, i).ok());
  ASSERT_TRUE((*c)->Sync(absl::Seconds(5)).ok());
  ASSERT_NO_FATAL_FAILURE(WriteAcrossALinkDrop(**c, 50, 100, 150));
  EXPECT_EQ((*c)->stats().reconnects, 1u);
  EXPECT_FALSE((*c)->stats().last_attach.anchor_pushed);
  ExpectAppliedInOrder(150);
  EXPECT_EQ(RefusedAll(), 0) << metrics_.Render();
}

// A client that does not dial (an older one, which ignores the field)
// attaches as before.
TEST_F(SessionTest, AClientThatDoesNotDialAheadAttachesAsBefore) {
  ServeWithSpareFabric();
  client::SessionTicket ticket = Reserve();
  client::ClientOptions opts;
  opts.dial_ahead = false;
  auto c = client::SessionClient::Attach(ticket, opts);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE((*c)->stats().last_attach.dialled);
  for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE((*c)->Write(0, 0x200 + (i % 8) * 8, 8, i).ok());
  ASSERT_TRUE((*c)->Sync(absl::Seconds(5)).ok());
  ExpectAppliedInOrder(20);
  EXPECT_EQ(RefusedAll(), 0) << metrics_.Render();
}

// Whoever holds the session id learns the endpoint early, and anyone on the
// network can reach it: a stranger that dials it, sends an empty message
// and frames before the client attaches gets nothing back and changes
// nothing: the client's attach dials it too, the agent pushes to the client
// only, and the stranger's frames are the only refusals.
TEST_F(SessionTest, AStrangerReachingTheEarlyNamedEndpointFirstGetsNothingAndChangesNothing) {
  ServeWithSpareFabric();
  client::SessionTicket ticket = Reserve();
  const std::string early = EndpointNamedByChallenge(ticket);
  ASSERT_FALSE(early.empty());
  auto stranger = Rogue(ticket.session_id, early);
  ASSERT_TRUE(stranger.endpoint->Dial(stranger.peer).ok());
  auto guess = *session::FrameChannel::Create(*session::SessionKey::Generate(), *session::NewNonce(),
                                              ticket.session_id, session::FrameChannel::Side::kClient);
  ASSERT_TRUE(stranger.Send(guess.Seal(session::FrameType::kKick, 0, 0)).ok());
  ASSERT_TRUE(stranger.endpoint->Dial(stranger.peer).ok());  // connected by now: an empty message
  ASSERT_TRUE(stranger.Send("not a frame").ok());
  WaitForRefused({{"stale_session", 1}, {"malformed", 1}});
  EXPECT_EQ(RefusedAll(), 2) << metrics_.Render();
  client::ClientOptions opts;
  opts.grace = absl::Seconds(5);
  auto c = client::SessionClient::Attach(ticket, opts);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->stats().last_attach.dialled);
  EXPECT_EQ((*c)->Read(2, 0, 4).value_or(0), 0xeeeeeeeeu);  // the agent's push reached the client
  for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE((*c)->Write(0, 0x200 + (i % 8) * 8, 8, i).ok());
  ASSERT_TRUE((*c)->Sync(absl::Seconds(5)).ok());
  ExpectAppliedInOrder(20);
  EXPECT_EQ(stranger.endpoint->Recv(absl::Milliseconds(200)).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(RefusedAll(), 2) << metrics_.Render();
}

// Client options whose fabric configuration no attach in this test process
// has opened yet (the process keeps one fabric per configuration): the next
// attach with them is a configuration's first, whose fabric side opens on a
// thread of its own beside the channel, the shape and the challenge.
client::ClientOptions UnopenedFabricConfig() {
  static std::atomic<int> n{0};
  client::ClientOptions opts;
  opts.fabric.op_timeout = absl::Seconds(2) + absl::Microseconds(++n);
  return opts;
}

// Threads of this process (the fabric side's thread and each endpoint's
// progress thread among them).
int ThreadCount() {
  return static_cast<int>(std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                        std::filesystem::directory_iterator()));
}

TEST_F(SessionTest, AFirstAttachOpensItsFabricBesideTheChallengeAndEveryWriteAppliesOnceInOrder) {
  client::SessionTicket ticket = Reserve();
  client::SessionTicket no_shape = ticket;  // as librpci's: the shape is learned alongside too
  no_shape.bars.clear();
  no_shape.dma_size = 0;
  const client::ClientOptions opts = UnopenedFabricConfig();
  auto c = client::SessionClient::Attach(no_shape, opts);
  ASSERT_TRUE(c.ok()) << c.status();
  const client::AttachSteps first = (*c)->stats().last_attach;
  EXPECT_TRUE(first.fabric_overlapped);
  EXPECT_GT(first.endpoint_open, absl::ZeroDuration());
  EXPECT_GT(first.shape, absl::ZeroDuration());
  EXPECT_EQ((*c)->dma_size(), ticket.dma_size);
  for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE((*c)->Write(0, (i % 16) * 8, 8, i).ok());
  ASSERT_TRUE((*c)->Sync(absl::Seconds(5)).ok());
  ExpectAppliedInOrder(100);
  ASSERT_TRUE((*c)->Close().ok());
  c->reset();
  auto again = client::SessionClient::Attach(ticket, opts);  // the configuration is open now
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE((*again)->stats().last_attach.fabric_overlapped);
}

TEST_F(SessionTest, AFirstAttachWhoseFabricFailsSaysWhyAndTheSessionStaysAttachable) {
  client::SessionTicket ticket = Reserve();
  client::ClientOptions broken = UnopenedFabricConfig();
  broken.fabric.provider = "no-such-provider";
  const absl::Time start = absl::Now();
  auto c = client::SessionClient::Attach(ticket, broken);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_NE(c.status().message().find("no-such-provider"), std::string::npos) << c.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));  // the challenge dropped, not waited out
  auto good = client::SessionClient::Attach(ticket, UnopenedFabricConfig());
  ASSERT_TRUE(good.ok()) << good.status();
  ASSERT_TRUE((*good)->Write(0, 0, 8, 0).ok());
  ASSERT_TRUE((*good)->Sync(absl::Seconds(5)).ok());
  ExpectAppliedInOrder(1);
}

TEST_F(SessionTest, AFirstAttachWhoseRpcsFailSaysWhyAndLeavesNoThreadOrEndpointOpen) {
  client::SessionTicket unknown = Reserve();
  unknown.session_id = *session::SessionId::Random();
  unknown.bars.clear();  // the shape's challenge fails while the fabric side opens
  unknown.dma_size = 0;
  client::SessionTicket forged = Reserve();
  forged.key = *session::SessionKey::Generate();  // refused by the attach, after the join
  // gRPC's and the fabric's threads for a failing first attach, once.
  ASSERT_FALSE(client::SessionClient::Attach(unknown, UnopenedFabricConfig()).ok());
  const int threads = ThreadCount();
  for (int i = 0; i < 3; ++i) {
    auto c = client::SessionClient::Attach(unknown, UnopenedFabricConfig());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound) << c.status();
    auto f = client::SessionClient::Attach(forged, UnopenedFabricConfig());
    EXPECT_EQ(f.status().code(), absl::StatusCode::kUnauthenticated) << f.status();
  }
  // Six fabric sides' threads and endpoints (each with a progress thread)
  // are gone: at most gRPC's pool moved meanwhile.
  EXPECT_LE(ThreadCount(), threads + 1);
  auto c = client::SessionClient::Attach(Reserve(), UnopenedFabricConfig());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->stats().last_attach.fabric_overlapped);
}

// A device that finishes a job on its own time, as a VFIO device's MSI
// does: Finish writes the result into its DMA space, raises vector 2 and
// signals its interrupt fd.
class AsyncDevice : public TestDevice {
 public:
  explicit AsyncDevice(size_t dma_size = 1 << 20)
      : TestDevice(dma_size), fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~AsyncDevice() override { close(fd_); }
  int interrupt_fd() override { return fd_; }
  std::vector<Interrupt> TakeInterrupts() override {
    uint64_t n = 0;
    while (read(fd_, &n, sizeof(n)) == sizeof(n)) {
    }
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(finished_, {});
  }
  void Finish(uint64_t job) {
    std::memcpy(dma_space() + kResult, &job, sizeof(job));
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_.push_back({2, 0, job});
    }
    const uint64_t one = 1;
    ASSERT_EQ(write(fd_, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  }
  static constexpr uint64_t kResult = 0x2000;

 private:
  const int fd_;
  std::mutex mu_;
  std::vector<Interrupt> finished_;
};

// The device finishes one job while the client idles (no kick) and one while
// the client's link is down (the agent's push fails, is retried, and is
// replayed when the client re-attaches): each completion arrives exactly once,
// after the DMA result it reports.
TEST_F(SessionTest, ACompletionRaisedWhileTheClientIsAwayArrivesOnceOnResume) {
  AsyncDevice async;
  auto stop_first = ServeWith(&async);  // before `async` goes
  // No heartbeats: the client stays away until it next waits.
  auto c = Attach(nullptr, "g-emu", absl::Hours(1));
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->MapFromDevice(AsyncDevice::kResult, 8).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  absl::SleepFor(absl::Milliseconds(100));  // the map frame is applied

  auto expect_job = [&](uint64_t seq, uint64_t job) {
    absl::StatusOr<session::Completion> got = c->WaitCompletion(absl::Seconds(10));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->seq, seq);
    EXPECT_EQ(got->vector, 2);
    EXPECT_EQ(got->data, job);
    uint64_t result = 0;
    std::memcpy(&result, c->dma() + AsyncDevice::kResult, sizeof(result));
    EXPECT_EQ(result, job);
  };
  async.Finish(0x1111);  // the client is attached and idle
  expect_job(1, 0x1111);
  // A write acknowledged: the client resumes its session when it re-attaches
  // (the agent pushes what it missed after the client's first frame).
  ASSERT_TRUE(c->Write(0, 0x40, 4, 7).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());

  c->BreakLinkForTesting();
  const double before = Completions();
  async.Finish(0x2222);  // nobody to push it to
  for (int i = 0; i < 200 && Completions() == before; ++i) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_EQ(Completions(), before + 1);
  // The agent tries to push it, and tries again.
  for (int i = 0; i < 500 && Metric("rpci_session_completion_push_failures_total") < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(Metric("rpci_session_completion_push_failures_total"), 2);
  expect_job(2, 0x2222);
  EXPECT_GE(c->stats().reconnects, 1u);
  EXPECT_EQ(c->WaitCompletion(absl::Milliseconds(500)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

// A client that has taken every completion may write its mapped buffers
// (librpci/device.h). Its link fails before a kick told the agent it took
// the last one: on resume the agent neither replays that completion nor
// pushes the device-written range over what the client wrote since; the
// next completion brings the device's bytes again.
TEST_F(SessionTest, AResumeAfterEveryCompletionWasTakenLeavesTheClientsMappedBuffersAlone) {
  AsyncDevice async;
  auto stop_first = ServeWith(&async);  // before `async` goes
  auto c = Attach(nullptr, "g-emu", absl::Hours(1));  // no heartbeats
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->MapFromDevice(AsyncDevice::kResult, 8).ok());
  ASSERT_TRUE(c->Write(0, 0x40, 4, 7).ok());  // acknowledged: the client resumes when it re-attaches
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  absl::SleepFor(absl::Milliseconds(100));  // the map frame is applied
  auto result = [&] {
    uint64_t v = 0;
    std::memcpy(&v, c->dma() + AsyncDevice::kResult, sizeof(v));
    return v;
  };
  async.Finish(0x1111);
  absl::StatusOr<session::Completion> got = c->WaitCompletion(absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(result(), 0x1111u);

  c->BreakLinkForTesting();
  const uint64_t mine = 0xC11E47;  // every completion taken: the buffer is the client's again
  std::memcpy(c->dma() + AsyncDevice::kResult, &mine, sizeof(mine));
  // The re-attach's first frame is not a kick (it says nothing of completions).
  ASSERT_TRUE(c->MapFromDevice(AsyncDevice::kResult, 8).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(10)).ok());
  EXPECT_GE(c->stats().reconnects, 1u);
  ASSERT_TRUE(c->Write(0, 0x40, 4, 8).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());  // a round trip after the resume's push
  EXPECT_EQ(result(), mine);
  EXPECT_EQ(c->WaitCompletion(absl::Milliseconds(300)).status().code(), absl::StatusCode::kDeadlineExceeded)
      << "the completion taken before the link failed came again";

  async.Finish(0x2222);
  got = c->WaitCompletion(absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->data, 0x2222u);
  EXPECT_EQ(result(), 0x2222u);
}

// A workload process (attach_helper) attached to `ticket`'s session, the
// first `map_bytes` of DMA space mapped from the device.
class WorkloadProcess {
 public:
  WorkloadProcess(const client::SessionTicket& ticket, uint64_t map_bytes) {
    int out[2];
    if (pipe(out) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addclose(&fa, out[1]);
    std::vector<std::string> args = {"agent/session/attach_helper", ticket.endpoint, ticket.session_id.ToString(),
                                     ticket.key.Hex(), std::to_string(map_bytes)};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    out_ = out[0];
  }
  ~WorkloadProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }
  // True once it printed "attached" (false: it exited first).
  bool Attached() {
    std::string text;
    char buf[64];
    for (ssize_t n; text.find("attached\n") == std::string::npos && (n = read(out_, buf, sizeof(buf))) > 0;) {
      text.append(buf, static_cast<size_t>(n));
    }
    return text.find("attached\n") != std::string::npos;
  }
  void Signal(int sig) { kill(pid_, sig); }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

// A workload's first attach opens libfabric on a second thread while its
// own thread starts gRPC (which reads the environment): libfabric's
// environment is set before that thread starts, on the attaching thread
// (attach_helper exits 3 on a setenv from any other thread). Before, the
// second thread's setenv beside gRPC's getenv crashed a workload in getenv
// (tests/e2e, 1 run in 3).
TEST_F(SessionTest, AWorkloadsFirstAttachSetsLibfabricsEnvironmentBeforeItsSecondThreadStarts) {
  client::SessionTicket ticket = Reserve();
  WorkloadProcess workload(ticket, 0);
  EXPECT_TRUE(workload.Attached());
}

// A workload that stops answering with its connection still open (a frozen
// or partitioned pod: SIGSTOP here): the agent's worker is pushing it a
// completion's 32 MiB of device-written DMA, more than the sockets buffer,
// and would wait the fabric's op_timeout, holding its session. The plugin's
// close waits for neither the push nor the close notice, and the device is
// scrubbed.
TEST_F(SessionTest, ClosingASessionWhoseClientStoppedAnsweringMidPushDoesNotWaitForIt) {
  constexpr uint64_t kMapped = uint64_t{32} << 20;
  AsyncDevice async(kMapped);
  fabric_.op_timeout = absl::Seconds(10);
  auto stop_first = ServeWith(&async);  // before `async` goes
  client::SessionTicket ticket = Reserve("g-emu");
  WorkloadProcess workload(ticket, kMapped);
  ASSERT_TRUE(workload.Attached());
  workload.Signal(SIGSTOP);
  const double before = Completions();
  async.Finish(0x3333);  // the worker pushes it to the stopped workload
  for (int i = 0; i < 200 && Completions() == before; ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(Completions(), before + 1);
  absl::SleepFor(absl::Milliseconds(200));  // inside the push
  ASSERT_NO_FATAL_FAILURE(ExpectPromptCleanClose(ticket, "emu0", "a stopped client's"));
  EXPECT_NE(Attach(nullptr, "g-emu"), nullptr);  // the next tenant gets the device
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
  ExpectAppliedInOrder(100);
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

TEST_F(SessionTest, MappingMoreRangesThanTheCapIsRefusedWithAClearStatus) {
  auto c = Attach();
  ASSERT_NE(c, nullptr);
  for (uint64_t i = 0; i <= SessionServerOptions().max_mapped_ranges; ++i) {
    ASSERT_TRUE(c->MapFromDevice(i * 64, 16).ok());
  }
  ASSERT_TRUE(c->Write(0, 0x40, 4, 1).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  absl::Status s = c->Refresh(absl::Seconds(5));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("over_limit"), std::string::npos) << s;
  EXPECT_EQ(Refused("over_limit"), 1);
}

// A device whose register write blocks (a long job) holds up only its own
// session: the other session's writes are applied meanwhile.
TEST_F(SessionTest, ASlowSessionDoesNotHoldUpAnother) {
  SlowDevice slow(absl::Seconds(3));
  auto stop_first = ServeWith(&slow);  // before `slow` goes

  auto a = Attach(nullptr, "g-emu");
  auto b = Attach();
  ASSERT_TRUE(a != nullptr && b != nullptr);
  ASSERT_TRUE(a->Write(0, 0x40, 4, SlowDevice::kSlowValue).ok());
  ASSERT_TRUE(a->Flush().ok());
  absl::SleepFor(absl::Milliseconds(100));  // a's worker is inside the slow write
  const absl::Time start = absl::Now();
  ASSERT_TRUE(b->Write(0, 0x40, 4, 1).ok());
  ASSERT_TRUE(b->Sync(absl::Seconds(5)).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  ASSERT_TRUE(a->Sync(absl::Seconds(10)).ok());
}

// Frames sent to a session's endpoint while its worker is busy wait in that
// endpoint's bounded queue (256 per sender, every stranger counted as one);
// the rest are dropped and counted, only that session's memory is at stake,
// and the flood does not crowd out the attached client's own frames.
TEST_F(SessionTest, AFloodOfFramesWhileTheWorkerIsBusyIsBoundedAndCounted) {
  SlowDevice slow(absl::Seconds(2));
  auto stop_first = ServeWith(&slow);  // before `slow` goes
  client::SessionTicket ticket;
  auto a = Attach(&ticket, "g-emu");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->Write(0, 0x40, 4, SlowDevice::kSlowValue).ok());
  ASSERT_TRUE(a->Flush().ok());
  absl::SleepFor(absl::Milliseconds(100));  // the worker is inside the slow write
  auto rogue = Rogue(ticket.session_id);
  std::ostringstream log;
  Logger::SetSink(&log);
  auto restore_log = absl::MakeCleanup([] { Logger::SetSink(&std::cerr); });
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(rogue.Send("not a frame " + std::to_string(i)).ok());
  // The client's kick (and any heartbeat) lands in its own share of the
  // queue: applied once the worker is free, none dropped.
  ASSERT_TRUE(a->Write(0, 0x44, 4, 0x1234).ok());
  ASSERT_TRUE(a->Sync(absl::Seconds(10)).ok());
  uint32_t applied = 0;
  ASSERT_TRUE(slow.ReadBar(0, 0x44, 4, reinterpret_cast<uint8_t*>(&applied)).ok());
  EXPECT_EQ(applied, 0x1234u);
  WaitForRefused({{"inbox_full", 344}, {"malformed", 256}});
  EXPECT_EQ(Refused("inbox_full"), 600 - 256);  // the stranger's, exactly
  EXPECT_EQ(Refused("malformed"), 256);
  EXPECT_EQ(Refused("inbox_full_client"), 0);
  // Counted each, but logged at most once a second: the flood does not flood the log.
  std::istringstream lines(log.str());
  int refusal_lines = 0;
  for (std::string line; std::getline(lines, line);) refusal_lines += line.find("\"frame refused\"") != std::string::npos;
  EXPECT_GE(refusal_lines, 1);
  EXPECT_LE(refusal_lines, 4) << log.str();
}

// Puts the session's worker inside SlowDevice's slow write (2 s), then sends
// `frames` frames of the client's own while it sits there.
void SendWhileTheWorkerIsInASlowWrite(client::SessionClient* a, int frames) {
  ASSERT_TRUE(a->Write(0, 0x40, 4, SlowDevice::kSlowValue).ok());
  ASSERT_TRUE(a->Flush().ok());
  absl::SleepFor(absl::Milliseconds(100));  // the worker is inside the slow write
  for (int i = 0; i < frames; ++i) ASSERT_TRUE(a->MapFromDevice(0, 4096).ok());
}

// The attached client's own frames beyond its share of the queue are
// dropped too, and counted apart (inbox_full_client), so an operator can
// tell a tenant that floods its own session from a stranger.
TEST_F(SessionTest, AClientsOwnFramesBeyondItsShareAreCountedApartFromStrangers) {
  SlowDevice slow(absl::Seconds(2));
  auto stop_first = ServeWith(&slow);  // before `slow` goes
  auto a = Attach(nullptr, "g-emu", /*heartbeat=*/absl::Minutes(5));  // no frame but the test's
  ASSERT_NE(a, nullptr);
  ASSERT_NO_FATAL_FAILURE(SendWhileTheWorkerIsInASlowWrite(a.get(), 300));
  ASSERT_TRUE(a->Sync(absl::Seconds(10)).ok());
  WaitForRefused({{"inbox_full_client", 300 - 256}});
  EXPECT_EQ(Refused("inbox_full_client"), 300 - 256);
  EXPECT_EQ(Refused("inbox_full"), 0);
}

// A kick the agent's endpoint dropped (the client's share of the inbox was
// full while the worker sat in a slow device write) is never answered: the
// client, hearing no ack for op_timeout over a live link, sends the writes
// again, and each reaches the device exactly once.
TEST_F(SessionTest, AKickTheAgentDroppedIsSentAgainAndEveryWriteAppliesOnce) {
  SlowDevice slow(absl::Seconds(2));
  auto stop_first = ServeWith(&slow);  // before `slow` goes
  auto a = Attach(nullptr, "g-emu", /*heartbeat=*/absl::Minutes(5));  // no frame but the test's
  ASSERT_NE(a, nullptr);
  ASSERT_NO_FATAL_FAILURE(SendWhileTheWorkerIsInASlowWrite(a.get(), 256));  // the client's whole share
  ASSERT_TRUE(a->Write(0, 0x48, 4, 0x77).ok());
  ASSERT_TRUE(a->Flush().ok());  // this kick finds the share full
  WaitForRefused({{"inbox_full_client", 1}});
  EXPECT_EQ(Refused("inbox_full_client"), 1);
  ASSERT_TRUE(a->Sync(absl::Seconds(20)).ok());
  EXPECT_GE(a->stats().resent_kicks, 1u);
  auto applied = slow.applied();
  ASSERT_EQ(applied.size(), 2u);
  EXPECT_EQ(applied[0].second, SlowDevice::kSlowValue);
  EXPECT_EQ(applied[1].second, 0x77u);
  EXPECT_EQ(Refused("bad_sequence"), 0);
}

// Threads of this process whose nice value is `nice` (/proc/self/task/*/stat,
// field 19).
int ThreadsAtNice(int nice) {
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (stat.rfind(')') == std::string::npos) continue;  // the thread ended since the listing
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19 && fields >> field; ++i) {
      if (i == 19 && field == std::to_string(nice)) ++n;
    }
  }
  return n;
}

// Whether a thread of this process may make itself less nice again.
bool MayLowerNice() {
  bool may = false;
  std::thread probe([&] {
    const int base = *ThreadNice();
    may = base < 19 && SetThreadNice(base + 1).ok() && SetThreadNice(base).ok();
  });
  probe.join();
  return may;
}

// Rings `c`'s test device once and waits for the completion.
void Ring(client::SessionClient& c, uint64_t i) {
  ASSERT_TRUE(c.Write(0, TestDevice::kDoorbell, 8, i).ok());
  ASSERT_TRUE(c.WaitCompletion(absl::Seconds(5)).ok());
}

// A session that pushes more than its byte budget is throttled: counted,
// logged, and its worker (only its) runs nicer and its endpoint moves bulk in
// small pieces (fabric::kYieldingPacing) until the budget has filled up
// again; a session that only rings doorbells never is. Counted against a
// manual clock, so nothing refills while the test runs unless it says so.
TEST_F(SessionTest, ASessionOverItsByteBudgetRunsNicerAndYieldsAndAQuietOneDoesNot) {
  ManualClock clock;
  throttle_ = {/*bytes_per_second=*/1 << 20, /*burst_bytes=*/3 << 19, /*nice=*/7};  // 1 MiB/s, 1.5 MiB
  clock_ = &clock;
  TestDevice quiet_device;
  auto stop_first = ServeWith(&quiet_device);  // before `clock` and `quiet_device` go
  const int base = *ThreadNice();
  const int niced = std::min(19, base + 7);
  ASSERT_EQ(ThreadsAtNice(niced), 0);
  client::SessionTicket flood_ticket, quiet_ticket;
  std::unique_ptr<client::SessionClient> flood, quiet;
  ASSERT_NO_FATAL_FAILURE(AttachFloodAndQuiet(&flood_ticket, &flood, &quiet_ticket, &quiet));
  auto pacing = [this](const client::SessionTicket& t) { return *server_->bulk_pacing(t.session_id); };
  for (uint64_t i = 0; i < 20; ++i) Ring(*quiet, i);
  EXPECT_EQ(Metric("rpci_session_throttled_total"), 0);
  Ring(*flood, 1);  // the burst, spent
  EXPECT_EQ(Metric("rpci_session_throttled_total"), 0);
  EXPECT_EQ(pacing(flood_ticket), fabric::kFullSpeedPacing);
  Ring(*flood, 2);  // past it
  EXPECT_EQ(Metric("rpci_session_throttled_total"), 1);
  EXPECT_GE(Metric("rpci_session_throttled_bytes_total"), 1 << 20);
  EXPECT_EQ(ThreadsAtNice(niced), 1);  // the flooding session's worker
  EXPECT_EQ(pacing(flood_ticket), fabric::kYieldingPacing);
  for (uint64_t i = 20; i < 40; ++i) Ring(*quiet, i);
  EXPECT_EQ(pacing(quiet_ticket), fabric::kFullSpeedPacing);
  Ring(*flood, 3);
  EXPECT_EQ(Metric("rpci_session_throttled_total"), 1);  // still the same throttling
  EXPECT_EQ(ThreadsAtNice(niced), 1);
  EXPECT_EQ(pacing(flood_ticket), fabric::kYieldingPacing);
  // Once the budget has filled up again, the worker runs as before (where
  // this process may lower a nice value again: root or CAP_SYS_NICE).
  clock.Advance(absl::Seconds(5));
  Ring(*flood, 4);
  EXPECT_EQ(ThreadsAtNice(niced), MayLowerNice() ? 0 : 1);
  EXPECT_EQ(Metric("rpci_session_throttled_total"), 1);
  EXPECT_EQ(pacing(flood_ticket), fabric::kFullSpeedPacing);
}

// Alone on the agent, a session over its byte budget keeps its priority and
// its full-speed pieces (there is nobody to yield to); its first push after
// another session rang is throttled, and it runs free again, still over
// budget, once the other session has been quiet for the contention window.
TEST_F(SessionTest, ASessionOverItsByteBudgetIsThrottledOnlyWhileAnotherSessionAsksForWork) {
  ManualClock clock;
  throttle_ = {/*bytes_per_second=*/1 << 20, /*burst_bytes=*/3 << 19, /*nice=*/7};  // 1 MiB/s, 1.5 MiB
  ASSERT_EQ(throttle_.contention_window, absl::Seconds(1));
  clock_ = &clock;
  TestDevice quiet_device;
  auto stop_first = ServeWith(&quiet_device);  // before `clock` and `quiet_device` go
  const int niced = std::min(19, *ThreadNice() + 7);
  ASSERT_EQ(ThreadsAtNice(niced), 0);
  client::SessionTicket flood_ticket, quiet_ticket;
  std::unique_ptr<client::SessionClient> flood, quiet;
  ASSERT_NO_FATAL_FAILURE(AttachFloodAndQuiet(&flood_ticket, &flood, &quiet_ticket, &quiet));
  auto pacing = [this](const client::SessionTicket& t) { return *server_->bulk_pacing(t.session_id); };
  for (uint64_t i = 1; i <= 3; ++i) Ring(*flood, i);  // 3 MiB against 1.5: over, but alone
  EXPECT_EQ(Metric("rpci_session_throttled_total"), 0);
  EXPECT_EQ(ThreadsAtNice(niced), 0);
  EXPECT_EQ(pacing(flood_ticket), fabric::kFullSpeedPacing);
  Ring(*quiet, 1);
  Ring(*flood, 4);
  EXPECT_EQ(Metric("rpci_session_throttled_total"), 1);
  EXPECT_GE(Metric("rpci_session_throttled_bytes_total"), 1 << 20);
  EXPECT_EQ(ThreadsAtNice(niced), 1);
  EXPECT_EQ(pacing(flood_ticket), fabric::kYieldingPacing);
  EXPECT_EQ(pacing(quiet_ticket), fabric::kFullSpeedPacing);
  // A second on, the budget has refilled by 1 MiB of the 2.5 spent past
  // it: still over, but the other session has not rung for the window.
  clock.Advance(absl::Seconds(1));
  Ring(*flood, 5);
  EXPECT_EQ(pacing(flood_ticket), fabric::kFullSpeedPacing);
  EXPECT_EQ(ThreadsAtNice(niced), MayLowerNice() ? 0 : 1);
  EXPECT_EQ(Metric("rpci_session_throttled_total"), 1);
  Ring(*quiet, 2);
  Ring(*flood, 6);
  EXPECT_EQ(Metric("rpci_session_throttled_total"), 2);
  EXPECT_EQ(pacing(flood_ticket), fabric::kYieldingPacing);
}

TEST_F(SessionTest, ADeviceWhoseScrubFailsIsNotGrantedAgain) {
  class DirtyDevice : public TestDevice {
   public:
    absl::Status Reset() override { return absl::FailedPreconditionError("test device: reset does not work"); }
  };
  DirtyDevice dirty;
  auto stop_first = ServeWith(&dirty);  // before `dirty` goes
  client::SessionTicket ticket;
  auto a = Attach(&ticket, "g-emu");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(client::ControlClient().Close(ticket).ok());
  absl::Status clean = server_->DeviceClean("emu0");
  EXPECT_EQ(clean.code(), absl::StatusCode::kFailedPrecondition) << clean;
  EXPECT_EQ(Scrubs("failed"), 1);
  absl::Status again = client::ControlClient({nullptr, absl::ZeroDuration()})
                           .Reserve(Endpoint(), {"g-emu", "secret-token", "node-a"})
                           .status();
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
  EXPECT_NE(again.message().find("not clean"), std::string::npos) << again;
  EXPECT_TRUE(server_->DeviceClean("dev0").ok());
}

// A workload's close detaches: the session stays for the pod's allocation
// and the next process (a restarted container) attaches with the same
// ticket; only CloseSession without detach (the plugin) ends it.
TEST_F(SessionTest, CloseDetachesAndOnlyThePluginEndsTheSession) {
  client::SessionTicket ticket;
  auto c = AttachAndWrite(&ticket, 0, 7);
  ASSERT_NE(c, nullptr);
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
  ASSERT_TRUE(client::ControlClient().Close(ticket).ok());
  EXPECT_EQ(server_->live_sessions(), 0u);
  EXPECT_EQ(client::SessionClient::Attach(ticket, {}).status().code(), absl::StatusCode::kNotFound);
}

// A pod is killed, not detached: its process (here: the client, dropped
// without Close) is gone when the plugin ends the allocation's session. The
// close answers at once, whatever the agent's fabric timeout, and the device
// is scrubbed and granted again.
TEST_F(SessionTest, ClosingASessionWhoseClientDiedWithoutDetachingDoesNotWaitForIt) {
  StopServer();
  fabric_.op_timeout = absl::Seconds(10);
  StartServer();
  client::SessionTicket ticket;
  auto c = AttachAndWrite(&ticket, 0, 7);
  ASSERT_NE(c, nullptr);  // the agent has a connection to it
  c.reset();  // killed: no detach, its endpoint gone
  ASSERT_NO_FATAL_FAILURE(ExpectPromptCleanClose(ticket, "dev0", "a dead client's"));
  EXPECT_EQ(Scrubs("clean"), 1);
  auto next = Attach();  // the next tenant gets the device
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(next->Write(0, 0, 4, 9).ok());
  EXPECT_TRUE(next->Sync(absl::Seconds(5)).ok());
}

// A live client, though, is told: the plugin's close reaches it as the
// agent's close frame.
TEST_F(SessionTest, ALiveClientLearnsThatThePluginClosedItsSession) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket, "g1", absl::Milliseconds(50));  // its heartbeat reads what arrives
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Write(0, 0, 4, 7).ok());
  ASSERT_TRUE(c->Sync(absl::Seconds(5)).ok());
  ASSERT_TRUE(client::ControlClient().Close(ticket).ok());
  absl::Status s;
  for (int i = 0; i < 100 && s.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    s = c->Write(0, 0, 4, 1);
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("closed by the agent"), std::string::npos) << s;
}

// A status probe of a session that has ended (the plugin's health check) is
// counted apart from refused attaches, so a metric of refusals does not read
// as restarts or attacks.
TEST_F(SessionTest, StatusProbesOfEndedSessionsAreNotCountedAsRefusals) {
  client::SessionTicket ticket;
  auto c = Attach(&ticket);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(client::ControlClient().Close(ticket).ok());
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<client::SessionState> state = client::ControlClient().Status(ticket);
    ASSERT_TRUE(state.ok()) << state.status();
    EXPECT_FALSE(state->live);
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
  auto probe = [&] {
    absl::StatusOr<client::SessionState> state = client::ControlClient().Status(ticket);
    return state.ok() && state->live;
  };
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(probe()) << "probe " << i;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(server_->live_sessions(), 1u);
  absl::SleepFor(absl::Milliseconds(900));
  EXPECT_EQ(server_->live_sessions(), 0u);
}

// The plugin's reservation can time out on its side after the agent opened
// the session (the answer is lost); the kubelet retries Allocate. The retry
// for the same grant from the same node gets that session again (same id and
// key: what the lost answer carried, to the same holder) so exactly one
// session holds the device; once a client has attached, a reservation is
// refused again.
TEST_F(SessionTest, AReservationRetriedAfterItsAnswerWasLostGetsTheSameSession) {
  client::SessionTicket lost = Reserve("g1");  // the plugin never saw this answer
  client::ControlClient once({nullptr, absl::ZeroDuration()});
  absl::StatusOr<client::SessionTicket> retry = once.Reserve(Endpoint(), {"g1", "secret-token", "node-a"});
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->session_id, lost.session_id);
  EXPECT_EQ(retry->key.Bytes(), lost.key.Bytes());
  EXPECT_EQ(server_->live_sessions(), 1u);
  auto c = client::SessionClient::Attach(*retry, {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Write(0, 0, 4, 7).ok());
  ASSERT_TRUE((*c)->Sync(absl::Seconds(5)).ok());
  ASSERT_TRUE((*c)->Close().ok());  // detached, but a client has used it
  absl::Status after = once.Reserve(Endpoint(), {"g1", "secret-token", "node-a"}).status();
  EXPECT_EQ(after.code(), absl::StatusCode::kFailedPrecondition) << after;
  ASSERT_TRUE(client::ControlClient().Close(*retry).ok());
  EXPECT_EQ(server_->live_sessions(), 0u);
  EXPECT_TRUE(once.Reserve(Endpoint(), {"g1", "secret-token", "node-a"}).ok());
}

// Only the reservation's own grant from its own node gets an unattached
// session again: another grant for the device, or the same node-less grant
// presented from another node, is refused and learns no key.
TEST_F(SessionTest, AnotherGrantOrNodeCannotTakeAnUnattachedReservation) {
  grants_.Upsert({"g-any-node", "dev0", "", "secret-token", absl::InfiniteFuture()});
  grants_.Upsert({"g1-other", "dev0", "node-a", "secret-token", absl::InfiniteFuture()});
  client::SessionTicket held = Reserve("g-any-node");
  client::ControlClient once({nullptr, absl::ZeroDuration()});
  absl::StatusOr<client::SessionTicket> other_node = once.Reserve(Endpoint(), {"g-any-node", "secret-token", "node-b"});
  EXPECT_EQ(other_node.status().code(), absl::StatusCode::kFailedPrecondition) << other_node.status();
  absl::StatusOr<client::SessionTicket> other_grant = once.Reserve(Endpoint(), {"g1-other", "secret-token", "node-a"});
  EXPECT_EQ(other_grant.status().code(), absl::StatusCode::kFailedPrecondition) << other_grant.status();
  EXPECT_EQ(server_->live_sessions(), 1u);
  absl::StatusOr<client::SessionTicket> same = once.Reserve(Endpoint(), {"g-any-node", "secret-token", "node-a"});
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->session_id, held.session_id);
}

// The plugin, its reservation timed out, releases the grant; the controller
// revokes it and grants the kubelet's retry anew. The lost reservation (never
// attached, its grant gone) ends, scrubbed, and the new grant gets the device:
// one session holds it. A session a client has attached is never ended so.
// The pod whose Allocate reserved a session is deleted before its container
// attached (or the kubelet gave up after losing the reservation's answer):
// the controller ends the grant, and the reaper frees the device then,
// scrubbed, instead of holding it until attach_timeout (10 min).
TEST_F(SessionTest, AnUnattachedReservationIsFreedOnceItsGrantEnds) {
  client::SessionTicket lost = Reserve("g1");
  absl::SleepFor(absl::Milliseconds(200));  // a few reaper passes: a live grant keeps it
  EXPECT_EQ(server_->live_sessions(), 1u);
  grants_.Revoke("g1");
  // Gone from the live count when its teardown starts; scrubbed at its end.
  for (int i = 0; i < 100 && Scrubs("clean") == 0; ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(server_->live_sessions(), 0u);
  EXPECT_EQ(Scrubs("clean"), 1);
  EXPECT_EQ(client::SessionClient::Attach(lost, {}).status().code(), absl::StatusCode::kNotFound);
}

// The agent restarts between a reservation and its attach, and the pod is
// deleted: the checkpoint says nobody attached it, so once the controller's
// grants are back (without its grant) the device is freed, scrubbed, and
// granted again. A session a client had attached before the restart is not
// ended so, though its grant is gone too. Until the grants are back, a
// missing grant may just not have arrived: nothing is ended for it.
TEST_F(SessionTest, AReservationNeverAttachedBeforeAnAgentRestartIsFreedOnceItsGrantEnds) {
  client::SessionTicket lost = Reserve("g1");
  client::SessionTicket attached_ticket;
  auto attached = Attach(&attached_ticket, "g-emu");
  ASSERT_NE(attached, nullptr);
  StopServer();
  StartServer();  // same state dir: both sessions come back from the checkpoint
  ASSERT_EQ(server_->live_sessions(), 2u);
  const double scrubbed = Scrubs("clean");
  grants_.Revoke("g1");
  grants_.Revoke("g-emu");
  absl::SleepFor(absl::Milliseconds(300));  // reaper passes before the controller's grants are back
  EXPECT_EQ(server_->live_sessions(), 2u);
  grants_.MarkFullSetReceived();
  for (int i = 0; i < 100 && Scrubs("clean") == scrubbed; ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(Scrubs("clean"), scrubbed + 1);
  absl::SleepFor(absl::Milliseconds(200));  // more passes: the attached one stays
  EXPECT_EQ(server_->live_sessions(), 1u);
  EXPECT_EQ(client::SessionClient::Attach(lost, {}).status().code(), absl::StatusCode::kNotFound);
  grants_.Upsert({"g2", "dev0", "node-a", "secret-token", absl::InfiniteFuture()});
  client::SessionTicket next = Reserve("g2");  // the device is free again
  EXPECT_NE(next.session_id, lost.session_id);
  EXPECT_EQ(server_->live_sessions(), 2u);
}

TEST_F(SessionTest, AnUnattachedReservationWhoseGrantEndedGivesWayToTheNextGrant) {
  client::SessionTicket lost = Reserve("g1");
  grants_.Revoke("g1");
  grants_.Upsert({"g2", "dev0", "node-a", "secret-token", absl::InfiniteFuture()});
  client::SessionTicket next = Reserve("g2");
  EXPECT_NE(next.session_id, lost.session_id);
  EXPECT_EQ(server_->live_sessions(), 1u);
  EXPECT_EQ(Scrubs("clean"), 1);
  EXPECT_EQ(client::SessionClient::Attach(lost, {}).status().code(), absl::StatusCode::kNotFound);
  auto c = client::SessionClient::Attach(next, {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Close().ok());
  grants_.Revoke("g2");
  grants_.Upsert({"g3", "dev0", "node-a", "secret-token", absl::InfiniteFuture()});
  absl::Status taken = client::ControlClient({nullptr, absl::ZeroDuration()})
                           .Reserve(Endpoint(), {"g3", "secret-token", "node-a"})
                           .status();
  EXPECT_EQ(taken.code(), absl::StatusCode::kFailedPrecondition) << taken;
  EXPECT_EQ(server_->live_sessions(), 1u);
}

}  // namespace
}  // namespace rpci::agent
