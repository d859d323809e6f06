#include "common/fabric/fabric.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <rdma/fi_errno.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace rpci::fabric {
namespace {

class FixedProbe : public RdmaProbe {
 public:
  explicit FixedProbe(bool active) : active_(active) {}
  bool HasActivePort() override { return active_; }

 private:
  bool active_;
};

FabricConfig TestConfig() {
  FabricConfig config = LoopbackConfig();
  config.op_timeout = absl::Seconds(3);
  return config;
}

// Two endpoints on loopback that know each other.
struct Pair {
  std::unique_ptr<Fabric> fabric, other;
  std::unique_ptr<Endpoint> a, b;
  PeerId b_from_a = 0, a_from_b = 0;
};

// a and b on separate domains, or on one when `shared_domain`.
Pair Connect(const FabricConfig& config = TestConfig(), bool shared_domain = false) {
  Pair p;
  auto fabric = Fabric::Open(config);
  EXPECT_TRUE(fabric.ok()) << fabric.status();
  if (!fabric.ok()) return p;
  p.fabric = std::move(*fabric);
  auto a = p.fabric->OpenEndpoint();
  if (!shared_domain) {
    auto other = Fabric::Open(config);
    EXPECT_TRUE(other.ok()) << other.status();
    if (!other.ok()) return p;
    p.other = std::move(*other);
  }
  auto b = (shared_domain ? p.fabric : p.other)->OpenEndpoint();
  EXPECT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(b.ok()) << b.status();
  if (!a.ok() || !b.ok()) return p;
  p.a = std::move(*a);
  p.b = std::move(*b);
  auto ab = p.a->InsertPeer(p.b->address());
  auto ba = p.b->InsertPeer(p.a->address());
  EXPECT_TRUE(ab.ok()) << ab.status();
  EXPECT_TRUE(ba.ok()) << ba.status();
  p.b_from_a = ab.value_or(0);
  p.a_from_b = ba.value_or(0);
  return p;
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + seed);
  return v;
}

RmaOp To(const MemoryRegion& local, const MemoryRegion& remote, size_t length, uint64_t remote_offset = 0) {
  return {&local, 0, length, remote.remote().address + remote_offset, remote.remote().key};
}

TEST(FabricErrorTest, MapsFabricErrnosToStatusCodesNamingTheCall) {
  EXPECT_EQ(FabricError("fi_write", -FI_ETIMEDOUT).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(FabricError("fi_mr_reg", FI_EKEYREJECTED).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(FabricError("fi_mr_reg", -FI_EINVAL).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FabricError("fi_getinfo", -FI_ENODATA).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FabricError("fi_mr_reg", -FI_ENOMEM).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FabricError("fi_read", -FI_EOPNOTSUPP).code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(FabricError("fi_cq_read", -FI_ECANCELED).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(FabricError("fi_send", -FI_EMSGSIZE).code(), absl::StatusCode::kOutOfRange);
  const absl::Status refused = FabricError("fi_send", -FI_ECONNREFUSED);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(refused.message().find("fabric: fi_send: "), 0u) << refused;
}

TEST(ResolveProviderTest, AutoPicksVerbsOnlyWhenAPortIsActive) {
  FixedProbe up(true), down(false);
  EXPECT_EQ(*ResolveProvider(kAuto, &up), kVerbs);
  EXPECT_EQ(*ResolveProvider(kAuto, &down), kTcp);
  EXPECT_EQ(*ResolveProvider(kShm, &up), kShm);
  EXPECT_EQ(*ResolveProvider(kTcp, &up), kTcp);
}

TEST(ResolveProviderTest, UnknownProviderIsInvalidArgument) {
  FixedProbe down(false);
  absl::StatusOr<std::string> p = ResolveProvider("udp;carrier-pigeon", &down);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("carrier-pigeon"), std::string::npos);
  FabricConfig config;
  config.provider = "";
  EXPECT_EQ(Fabric::Open(config, &down).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ReadFabricConfigTest, ReadsEveryKeyAndRejectsBadValues) {
  auto json = ParseConfigText("provider: shm\naddress: 10.0.0.1\nuniverse_size: 16\nbusy_poll_us: 30\n", "fabric.yaml");
  ASSERT_TRUE(json.ok());
  ConfigReader reader(*json, "fabric.yaml");
  FabricConfig config;
  ReadFabricConfig(reader, &config);
  ASSERT_TRUE(reader.Finish().ok()) << reader.Finish();
  EXPECT_EQ(config.provider, kShm);
  EXPECT_EQ(config.node, "10.0.0.1");
  EXPECT_EQ(config.universe_size, 16u);
  EXPECT_EQ(config.busy_poll, absl::Microseconds(30));

  auto bad = ParseConfigText("provider: udp\nuniverse_size: 0\nservice: '7000'\n", "bad.yaml");
  ConfigReader bad_reader(*bad, "bad.yaml");
  FabricConfig unchanged;
  ReadFabricConfig(bad_reader, &unchanged);
  absl::Status s = bad_reader.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("provider"), std::string::npos);
  EXPECT_NE(s.message().find("universe_size"), std::string::npos);
  EXPECT_NE(s.message().find("service"), std::string::npos) << "not a key of the section";
}

TEST(FabricTest, EndpointBindsToTheConfiguredAddress) {
  Pair p = Connect();
  ASSERT_NE(p.a, nullptr);
  EXPECT_EQ(p.a->provider(), kTcp);
  ASSERT_EQ(p.a->address().size(), sizeof(sockaddr_in));
  sockaddr_in sin;
  std::memcpy(&sin, p.a->address().data(), sizeof(sin));
  EXPECT_EQ(sin.sin_family, AF_INET);
  EXPECT_EQ(ntohl(sin.sin_addr.s_addr), INADDR_LOOPBACK);
  EXPECT_NE(sin.sin_port, 0);
}

TEST(FabricTest, OneSidedWriteAndReadMoveBytes) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  std::vector<uint8_t> src = Pattern(1 << 20, 1), target(1 << 20, 0), back(1 << 20, 0);
  auto src_mr = p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto back_mr = p.a->RegisterMemory(back.data(), back.size(), kLocalOnly);
  auto target_mr = p.b->RegisterMemory(target.data(), target.size(), kRemoteRead | kRemoteWrite);
  ASSERT_TRUE(src_mr.ok() && back_mr.ok() && target_mr.ok()) << target_mr.status();

  ASSERT_TRUE(p.a->Write(p.b_from_a, To(**src_mr, **target_mr, src.size())).ok());
  EXPECT_EQ(target, src);
  // Read back the second page of the target into the start of `back`.
  absl::Status r = p.a->Read(p.b_from_a, To(**back_mr, **target_mr, 4096, 4096));
  ASSERT_TRUE(r.ok()) << r;
  EXPECT_EQ(0, std::memcmp(back.data(), src.data() + 4096, 4096));
}

TEST(FabricTest, EndpointsOfOneDomainReachEachOthersRegions) {
  Pair p = Connect(TestConfig(), /*shared_domain=*/true);
  ASSERT_NE(p.b, nullptr);
  std::vector<uint8_t> src = Pattern(8192, 5), target(8192, 0);
  auto src_mr = *p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  absl::Status w = p.a->Write(p.b_from_a, To(*src_mr, *target_mr, 4096, 4096));
  ASSERT_TRUE(w.ok()) << w;
  EXPECT_EQ(0, std::memcmp(&target[4096], src.data(), 4096));
  EXPECT_EQ(target[4095], 0);
}

TEST(FabricTest, BatchedWritesLandAtTheirOffsets) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  std::vector<uint8_t> src = Pattern(64 * 1024, 9), target(64 * 1024, 0);
  auto src_mr = *p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  std::vector<RmaOp> ops;
  for (size_t off = 0; off < src.size(); off += 8192) {
    ops.push_back({src_mr.get(), off, 4096, target_mr->remote().address + off, target_mr->remote().key});
  }
  ASSERT_TRUE(p.a->WriteBatch(p.b_from_a, ops).ok());
  for (size_t off = 0; off < src.size(); off += 8192) {
    EXPECT_EQ(0, std::memcmp(&target[off], &src[off], 4096)) << off;
    EXPECT_EQ(target[off + 4096], 0) << off;
  }
}

// Under every pacing (Endpoint::set_bulk_pacing; an endpoint starts at full
// speed), transfers cut into many pieces, with lengths and offsets that are
// not multiples of a piece, land byte for byte, batched or not, and nothing
// around them; WriteAndSend's message arrives after all of its pieces.
TEST(FabricTest, TransfersOfManyPiecesLandWholeAtOddOffsetsUnderEveryPacing) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  EXPECT_EQ(p.a->bulk_pacing(), kFullSpeedPacing);
  constexpr size_t kLen = (5 << 20) + 123, kSlack = 64;
  std::vector<uint8_t> src = Pattern(kLen + kSlack, 3), target(2 * (kLen + kSlack)), back(kLen + kSlack);
  auto src_mr = *p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto back_mr = *p.a->RegisterMemory(back.data(), back.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(target.data(), target.size(), kRemoteRead | kRemoteWrite);
  const uint64_t base = target_mr->remote().address, key = target_mr->remote().key;
  for (const BulkPacing pacing : {kFullSpeedPacing, kYieldingPacing, BulkPacing{40961, 3 * 40961 + 5}}) {
    SCOPED_TRACE(absl::StrCat("piece ", pacing.piece_bytes, " in flight ", pacing.bytes_in_flight));
    p.a->set_bulk_pacing(pacing);
    EXPECT_EQ(p.a->bulk_pacing(), pacing);
    std::fill(target.begin(), target.end(), 0);
    std::fill(back.begin(), back.end(), 0);
    // One op from local offset 7 to remote offset 13; then a batch of two
    // ops into the second half, and a message after them.
    absl::Status w = p.a->Write(p.b_from_a, {src_mr.get(), 7, kLen, base + 13, key});
    ASSERT_TRUE(w.ok()) << w;
    w = p.a->WriteAndSend(p.b_from_a,
                          {{src_mr.get(), 0, kLen / 2, base + kLen + kSlack, key},
                           {src_mr.get(), kLen / 2, kLen - kLen / 2, base + kLen + kSlack + kLen / 2, key}},
                          "placed");
    ASSERT_TRUE(w.ok()) << w;
    absl::StatusOr<std::string> m = p.b->Recv(absl::Seconds(3));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(*m, "placed");
    EXPECT_EQ(0, std::memcmp(&target[13], &src[7], kLen));
    EXPECT_EQ(target[12], 0);
    EXPECT_EQ(target[13 + kLen], 0);
    EXPECT_EQ(0, std::memcmp(&target[kLen + kSlack], src.data(), kLen));
    EXPECT_EQ(target[2 * kLen + kSlack], 0);
    absl::Status r = p.a->Read(p.b_from_a, {back_mr.get(), 5, kLen, base + 13, key});
    ASSERT_TRUE(r.ok()) << r;
    EXPECT_EQ(0, std::memcmp(&back[5], &src[7], kLen));
    EXPECT_EQ(back[4], 0);
    EXPECT_EQ(back[5 + kLen], 0);
  }
}

// The provider's answer (fi_getinfo) for a configuration is asked once per
// process; later opens make their own fabric and domain from a copy of it
// (the agent opens one per session), and their endpoints work as before.
TEST(FabricTest, LaterOpensOfAConfigurationReuseTheProvidersAnswerAndTheirEndpointsTalk) {
  Pair first = Connect();
  ASSERT_NE(first.b, nullptr);
  const uint64_t asked = ProviderQueriesForTesting();
  ASSERT_GE(asked, 1u);
  Pair p = Connect();  // two more opens of the same configuration
  ASSERT_NE(p.b, nullptr);
  EXPECT_EQ(ProviderQueriesForTesting(), asked);
  EXPECT_NE(p.a->address(), first.a->address());
  ASSERT_TRUE(p.a->Send(p.b_from_a, "through a remembered answer").ok());
  EXPECT_EQ(p.b->Recv(absl::Seconds(3)).value_or(""), "through a remembered answer");
  std::vector<uint8_t> src = Pattern(8192, 9), target(8192, 0);
  auto src_mr = p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto target_mr = p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  ASSERT_TRUE(src_mr.ok() && target_mr.ok());
  ASSERT_TRUE(p.a->Write(p.b_from_a, To(**src_mr, **target_mr, src.size())).ok());
  EXPECT_EQ(target, src);
  // Another node is another question.
  FabricConfig other = TestConfig();
  other.node = "localhost";
  auto f = Fabric::Open(other);
  if (f.ok()) {
    EXPECT_EQ(ProviderQueriesForTesting(), asked + 1);
  }
}

// A remembered answer that no longer opens (fi_fabric fails with it) is
// forgotten and the provider is asked again, once: the open succeeds, its
// endpoints talk, and the new answer is remembered for the next open.
TEST(FabricTest, AnOpenWhoseRememberedAnswerNoLongerOpensAsksTheProviderAgain) {
  ASSERT_TRUE(Fabric::Open(TestConfig()).ok());  // an answer is remembered
  SpoilRememberedProviderAnswersForTesting();
  const uint64_t asked = ProviderQueriesForTesting();
  Pair p = Connect();  // two opens: the first asks again, the second reuses it
  ASSERT_NE(p.b, nullptr);
  EXPECT_EQ(ProviderQueriesForTesting(), asked + 1);
  ASSERT_TRUE(p.a->Send(p.b_from_a, "through the answer asked again").ok());
  EXPECT_EQ(p.b->Recv(absl::Seconds(3)).value_or(""), "through the answer asked again");
}

TEST(FabricTest, MessagesArriveInOrder) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(p.a->Send(p.b_from_a, "message " + std::to_string(i)).ok());
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<std::string> m = p.b->Recv(absl::Seconds(3));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(*m, "message " + std::to_string(i));
  }
  ASSERT_TRUE(p.b->Send(p.a_from_b, std::string(4096, 'x')).ok());
  EXPECT_EQ(p.a->Recv(absl::Seconds(3)).value_or(""), std::string(4096, 'x'));
}

// The progress thread and a waiting caller both read the completion queue
// (the caller leads, the progress thread reads while nobody waits).
// Messages still reach Recv in the order they were sent however the two
// hand over: the receiver here keeps stopping and starting, so the progress
// thread takes over the reading between its calls, and every reader holds
// what it read for a while (as when it loses the CPU) before handing it on.
TEST(FabricTest, MessagesArriveInOrderWhileTheProgressThreadAndCallersTakeTurnsReading) {
  FabricConfig config = TestConfig();
  // Every reader holds what it read a while before handing it on.
  config.completion_read_pause_for_testing = absl::Microseconds(300);
  Pair p = Connect(config);
  ASSERT_NE(p.b, nullptr);
  constexpr int kMessages = 5000;
  std::thread sender([&] {
    for (int i = 0; i < kMessages; ++i) {
      if (!p.a->Send(p.b_from_a, std::to_string(i)).ok()) return;
      if (i % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  // What a session's frame check does: each must come after the last.
  int received = 0, last = -1, out_of_order = 0;
  while (received < kMessages) {
    absl::StatusOr<std::string> m = p.b->Recv(absl::Seconds(5));
    if (!m.ok()) break;
    ++received;
    const int got = std::stoi(*m);
    if (got <= last) ++out_of_order;
    last = std::max(last, got);
    // Away from the queue long enough for the progress thread to read.
    if (got % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(2500));
  }
  sender.join();
  EXPECT_EQ(received, kMessages);
  EXPECT_EQ(out_of_order, 0) << "messages that came after a later one";
}

// What a session server binds its frames to: the sender as the receiver
// inserted it, and kUnknownPeer for an endpoint it never inserted.
TEST(FabricTest, RecvFromNamesTheSenderAndOnlyPeersThatWereInserted) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  ASSERT_TRUE(p.b->reports_sender());
  ASSERT_TRUE(p.a->Send(p.b_from_a, "from a").ok());
  absl::StatusOr<Message> m = p.b->RecvFrom(absl::Seconds(3));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->bytes, "from a");
  EXPECT_EQ(m->from, p.a_from_b);
  // A stranger that b never inserted.
  auto stranger_fabric = *Fabric::Open(TestConfig());
  auto stranger = *stranger_fabric->OpenEndpoint();
  PeerId b_from_stranger = *stranger->InsertPeer(p.b->address());
  ASSERT_TRUE(stranger->Send(b_from_stranger, "from a stranger").ok());
  m = p.b->RecvFrom(absl::Seconds(3));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->bytes, "from a stranger");
  EXPECT_EQ(m->from, kUnknownPeer);
}

// Established TCP connections (this network namespace's /proc/net/tcp) whose
// local port is the one in `address` (a tcp endpoint's sockaddr_in): the
// connections accepted by that endpoint.
int AcceptedBy(const std::string& address) {
  sockaddr_in sin;
  std::memcpy(&sin, address.data(), sizeof(sin));
  const int port = ntohs(sin.sin_port);
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);  // the header
  int n = 0;
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    const size_t colon = local.find(':');
    if (state == "01" && colon != std::string::npos && std::stoi(local.substr(colon + 1), nullptr, 16) == port) ++n;
  }
  return n;
}

TEST(FabricTest, ADialConnectsAheadAndThePeersFirstWriteBackUsesThatConnection) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  ASSERT_EQ(AcceptedBy(p.b->address()), 0);
  ASSERT_TRUE(p.a->Dial(p.b_from_a).ok());  // returns at once
  for (int i = 0; i < 300 && AcceptedBy(p.b->address()) == 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(AcceptedBy(p.b->address()), 1);
  // b's first operation towards a (as the agent's first push to a client
  // that dialled it) goes over a's connection: nothing connects into a.
  std::vector<uint8_t> dst(256, 0), src = Pattern(256, 7);
  auto dst_mr = *p.a->RegisterMemory(dst.data(), dst.size(), kRemoteWrite);
  auto src_mr = *p.b->RegisterMemory(src.data(), src.size(), kLocalOnly);
  ASSERT_TRUE(p.b->Write(p.a_from_b, To(*src_mr, *dst_mr, src.size())).ok());
  EXPECT_EQ(dst, src);
  EXPECT_EQ(AcceptedBy(p.a->address()), 0);
  EXPECT_EQ(AcceptedBy(p.b->address()), 1);
  // The dial itself carried nothing; a dial over the live connection is an
  // empty message, which the receiver sees as one.
  EXPECT_EQ(p.b->Recv(absl::Milliseconds(100)).status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(p.a->Dial(p.b_from_a).ok());
  absl::StatusOr<std::string> empty = p.b->Recv(absl::Seconds(3));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, "");
  EXPECT_EQ(p.a->failed_ops(), 0u);
}

TEST(FabricTest, WakeReturnsAWaitingReceiverAndQueuedMessagesComeFirst) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  std::thread waker([&] {
    absl::SleepFor(absl::Milliseconds(50));
    p.b->Wake();
  });
  const absl::Time start = absl::Now();
  EXPECT_EQ(p.b->RecvFrom(absl::Seconds(5)).status().code(), absl::StatusCode::kAborted);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  waker.join();
  // A wake-up is used once; a message queued at the time goes first.
  ASSERT_TRUE(p.a->Send(p.b_from_a, "queued").ok());
  absl::StatusOr<Message> m = p.b->RecvFrom(absl::Seconds(3));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->bytes, "queued");
  ASSERT_TRUE(p.a->Send(p.b_from_a, "first").ok());
  absl::SleepFor(absl::Milliseconds(100));
  p.b->Wake();
  EXPECT_EQ(p.b->RecvFrom(absl::Seconds(3)).value_or(Message{}).bytes, "first");
}

TEST(FabricTest, MessagesBeyondMaxQueuedAreDroppedAndCounted) {
  FabricConfig config = TestConfig();
  config.max_queued = 4;
  Pair p = Connect(config);
  ASSERT_NE(p.b, nullptr);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(p.a->Send(p.b_from_a, "m" + std::to_string(i)).ok());
  for (int i = 0; i < 100 && p.b->dropped_messages() < 6; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(p.b->dropped_messages(), 6u);
  EXPECT_EQ(p.b->dropped_messages_from(p.a_from_b), 6u);
  EXPECT_EQ(p.b->dropped_messages_from(kUnknownPeer), 0u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(p.b->Recv(absl::Seconds(1)).value_or(""), "m" + std::to_string(i));
  EXPECT_EQ(p.b->Recv(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

// The bound is per sender: a stranger (never inserted) that fills its share
// of the queue does not push out a known peer's messages, and each sender's
// drops are counted apart.
TEST(FabricTest, AFloodingSenderFillsOnlyItsOwnShareOfTheQueue) {
  FabricConfig config = TestConfig();
  config.max_queued = 4;
  Pair p = Connect(config);
  ASSERT_NE(p.b, nullptr);
  ASSERT_TRUE(p.b->reports_sender());
  auto stranger_fabric = Fabric::Open(config);
  ASSERT_TRUE(stranger_fabric.ok()) << stranger_fabric.status();
  auto stranger = (*stranger_fabric)->OpenEndpoint();
  ASSERT_TRUE(stranger.ok()) << stranger.status();
  PeerId to_b = *(*stranger)->InsertPeer(p.b->address());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*stranger)->Send(to_b, "flood" + std::to_string(i)).ok());
  for (int i = 0; i < 100 && p.b->dropped_messages() < 6; ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(p.b->dropped_messages_from(kUnknownPeer), 6u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.a->Send(p.b_from_a, "known" + std::to_string(i)).ok());
  int known = 0, flood = 0;
  for (int i = 0; i < 7; ++i) {
    absl::StatusOr<Message> m = p.b->RecvFrom(absl::Seconds(2));
    ASSERT_TRUE(m.ok()) << m.status();
    if (m->from == p.a_from_b) {
      EXPECT_EQ(m->bytes, "known" + std::to_string(known++));
    } else {
      EXPECT_EQ(m->from, kUnknownPeer);
      EXPECT_EQ(m->bytes, "flood" + std::to_string(flood++));
    }
  }
  EXPECT_EQ(known, 3);
  EXPECT_EQ(flood, 4);
  EXPECT_EQ(p.b->dropped_messages_from(p.a_from_b), 0u);
  EXPECT_EQ(p.b->dropped_messages(), 6u);
}

TEST(FabricTest, RecvTimesOutWhenNothingArrives) {
  Pair p = Connect();
  ASSERT_NE(p.a, nullptr);
  absl::Time start = absl::Now();
  EXPECT_EQ(p.a->Recv(absl::Milliseconds(100)).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(90));
}

TEST(FabricTest, BadMessagesAreRefusedBeforePosting) {
  Pair p = Connect();
  ASSERT_NE(p.a, nullptr);
  EXPECT_EQ(p.a->Send(p.b_from_a, "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.a->Send(p.b_from_a, std::string(4097, 'x')).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FabricTest, WriteWithARevokedKeyFailsAndLeavesMemoryAlone) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  std::vector<uint8_t> src(4096, 0x5a), target(4096, 0);
  auto src_mr = *p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  RmaOp op = To(*src_mr, *target_mr, 4096);
  target_mr->Revoke();
  EXPECT_TRUE(target_mr->revoked());
  absl::Status s = p.a->Write(p.b_from_a, op);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_NE(s.message().find("fi_writemsg"), std::string::npos) << s;
  EXPECT_EQ(target, std::vector<uint8_t>(4096, 0));
  EXPECT_GE(p.a->failed_ops(), 1u);
}

TEST(FabricTest, WriteOutsideTheRemoteRegionFailsAndLeavesMemoryAlone) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  // The target region is the middle page of a buffer; its neighbours must stay 0.
  std::vector<uint8_t> src(8192, 0x77), buffer(3 * 4096, 0);
  auto src_mr = *p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(buffer.data() + 4096, 4096, kRemoteRead | kRemoteWrite);
  // Too long, past the end, and before the start.
  std::vector<RmaOp> bad = {To(*src_mr, *target_mr, 8192), To(*src_mr, *target_mr, 16, 4090),
                            {src_mr.get(), 0, 16, target_mr->remote().address - 8, target_mr->remote().key}};
  for (const RmaOp& op : bad) {
    absl::Status s = p.a->Write(p.b_from_a, op);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  }
  EXPECT_FALSE(p.a->Read(p.b_from_a, To(*src_mr, *target_mr, 8192)).ok());
  EXPECT_EQ(buffer, std::vector<uint8_t>(3 * 4096, 0));
  // The endpoint still works afterwards (rxm re-dials the dropped connection).
  EXPECT_TRUE(p.a->Write(p.b_from_a, To(*src_mr, *target_mr, 4096)).ok());
  EXPECT_EQ(buffer[4096], 0x77);
}

TEST(FabricTest, ReadOnlyRegionsRefuseRemoteWrites) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  std::vector<uint8_t> local(4096, 0x11), read_only = Pattern(4096, 3);
  const std::vector<uint8_t> read_only_before = read_only;
  auto local_mr = *p.a->RegisterMemory(local.data(), local.size(), kLocalOnly);
  auto ro_mr = *p.b->RegisterMemory(read_only.data(), read_only.size(), kRemoteRead);
  EXPECT_FALSE(p.a->Write(p.b_from_a, To(*local_mr, *ro_mr, 64)).ok());
  EXPECT_EQ(read_only, read_only_before);
  absl::Status r = p.a->Read(p.b_from_a, To(*local_mr, *ro_mr, 64));
  ASSERT_TRUE(r.ok()) << r;
  EXPECT_EQ(0, std::memcmp(local.data(), read_only.data(), 64));
}

TEST(FabricTest, LocalRangeIsCheckedBeforePosting) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  std::vector<uint8_t> local(4096), target(4096);
  auto local_mr = *p.a->RegisterMemory(local.data(), local.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  RmaOp op = To(*local_mr, *target_mr, 4096);
  op.local_offset = 1;
  EXPECT_EQ(p.a->Write(p.b_from_a, op).code(), absl::StatusCode::kOutOfRange);
  op.local_offset = SIZE_MAX;
  op.length = 2;
  EXPECT_EQ(p.a->Write(p.b_from_a, op).code(), absl::StatusCode::kOutOfRange);
  op = To(*local_mr, *target_mr, 0);
  EXPECT_EQ(p.a->Write(p.b_from_a, op).code(), absl::StatusCode::kOutOfRange);
  op.local = nullptr;
  EXPECT_EQ(p.a->Write(p.b_from_a, op).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FabricTest, BadRegistrationsAndPeerAddressesAreInvalidArguments) {
  Pair p = Connect();
  ASSERT_NE(p.a, nullptr);
  uint8_t byte = 0;
  EXPECT_EQ(p.a->RegisterMemory(nullptr, 16, kRemoteRead).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.a->RegisterMemory(&byte, 0, kRemoteRead).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.a->RegisterMemory(&byte, 1, 0x80).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.a->InsertPeer("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.a->InsertPeer("short").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FabricTest, KeysDifferBetweenRegions) {
  Pair p = Connect();
  ASSERT_NE(p.a, nullptr);
  std::vector<uint8_t> one(64), two(64);
  auto mr1 = *p.a->RegisterMemory(one.data(), one.size(), kRemoteWrite);
  auto mr2 = *p.a->RegisterMemory(two.data(), two.size(), kRemoteWrite);
  EXPECT_NE(mr1->remote().key, mr2->remote().key);
  EXPECT_EQ(mr1->remote().size, 64u);
}

// tcp;ofi_rxm lets the application choose keys: they must be random, not
// the provider's counter (1, 2, 3 ...), so a peer cannot guess another
// region's key.
TEST(FabricTest, RegionKeysOnTcpAreRandomNotSequential) {
  Pair p = Connect();
  ASSERT_NE(p.a, nullptr);
  ASSERT_FALSE(p.a->mr_mode().prov_key);
  std::vector<uint8_t> one(64), two(64);
  auto mr1 = *p.a->RegisterMemory(one.data(), one.size(), kRemoteWrite);
  auto mr2 = *p.a->RegisterMemory(two.data(), two.size(), kRemoteWrite);
  EXPECT_GT(mr1->remote().key, uint64_t{1} << 20);
  EXPECT_GT(mr2->remote().key, uint64_t{1} << 20);
}

// The doorbell path: the receiver of the message must already see every
// byte of the writes sent with it, in one round trip on tcp. The 1 MiB fills
// a pacing group; the 8-byte write and the message ride with it.
TEST(FabricTest, WriteAndSendPlacesTheDataBeforeTheMessageArrives) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  EXPECT_TRUE(p.a->ordered_writes());  // tcp;ofi_rxm grants WAW and SAW
  std::vector<uint8_t> src = Pattern(1 << 20, 1), target(1 << 20, 0), tail(8, 0x77), target_tail(8, 0);
  auto src_mr = *p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto tail_mr = *p.a->RegisterMemory(tail.data(), tail.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  auto target_tail_mr = *p.b->RegisterMemory(target_tail.data(), target_tail.size(), kRemoteWrite);
  for (int round = 0; round < 5; ++round) {
    src[0] = static_cast<uint8_t>(round);
    tail[0] = static_cast<uint8_t>(round);
    absl::Status s = p.a->WriteAndSend(
        p.b_from_a, {To(*src_mr, *target_mr, src.size()), To(*tail_mr, *target_tail_mr, tail.size())}, "go");
    ASSERT_TRUE(s.ok()) << s;
    absl::StatusOr<std::string> m = p.b->Recv(absl::Seconds(3));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(*m, "go");
    EXPECT_EQ(target, src);
    EXPECT_EQ(target_tail, tail);
  }
  // With nothing to write it is a plain send.
  ASSERT_TRUE(p.a->WriteAndSend(p.b_from_a, {}, "bare").ok());
  EXPECT_EQ(p.b->Recv(absl::Seconds(3)).value_or(""), "bare");
}

TEST(FabricTest, WriteAndSendChecksEverythingBeforePosting) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  std::vector<uint8_t> local(4096), target(4096, 0);
  auto local_mr = *p.a->RegisterMemory(local.data(), local.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  RmaOp outside = To(*local_mr, *target_mr, 4096);
  outside.local_offset = 1;
  EXPECT_EQ(p.a->WriteAndSend(p.b_from_a, {outside}, "go").code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(p.a->WriteAndSend(p.b_from_a, {To(*local_mr, *target_mr, 16)}, "").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.b->Recv(absl::Milliseconds(100)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(FabricTest, ShutdownWakesReceiversAndCancelsLaterOperations) {
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  absl::Status received;
  std::thread receiver([&] { received = p.a->Recv(absl::Seconds(10)).status(); });
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time start = absl::Now();
  p.a->Shutdown();
  receiver.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(received.code(), absl::StatusCode::kCancelled) << received;
  EXPECT_EQ(p.a->Recv(absl::Seconds(1)).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(p.a->Send(p.b_from_a, "late").code(), absl::StatusCode::kCancelled);
  std::vector<uint8_t> src(64, 1), target(64, 0);
  auto src_mr = *p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  EXPECT_EQ(p.a->Write(p.b_from_a, To(*src_mr, *target_mr, 64)).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(p.a->WriteAndSend(p.b_from_a, {To(*src_mr, *target_mr, 64)}, "late").code(),
            absl::StatusCode::kCancelled);
  p.a->Shutdown();  // idempotent
  EXPECT_EQ(target, std::vector<uint8_t>(64, 0));
}

TEST(FabricTest, AVanishedPeerGivesAnErrorWithinTheTimeout) {
  FabricConfig config = TestConfig();
  config.op_timeout = absl::Seconds(1);
  Pair p = Connect(config);
  ASSERT_NE(p.b, nullptr);
  std::vector<uint8_t> src(4096, 1), target(4096, 0);
  auto src_mr = *p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto target_mr = p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  ASSERT_TRUE(target_mr.ok());
  RmaOp op = To(*src_mr, **target_mr, 4096);
  ASSERT_TRUE(p.a->Write(p.b_from_a, op).ok());
  target_mr->reset();
  p.b.reset();
  absl::Time start = absl::Now();
  absl::Status w = p.a->Write(p.b_from_a, op);
  absl::Status s = p.a->Send(p.b_from_a, "anyone?");
  EXPECT_FALSE(w.ok());
  EXPECT_FALSE(s.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(2) + absl::Milliseconds(500)) << w << " / " << s;
}

TEST(FabricTest, UnreachableBindAddressFailsToOpen) {
  FabricConfig config = TestConfig();
  config.node = "192.0.2.77";  // TEST-NET-1: not an address of this host
  absl::StatusOr<std::unique_ptr<Fabric>> fabric = Fabric::Open(config);
  absl::Status s = fabric.ok() ? (*fabric)->OpenEndpoint().status() : fabric.status();
  EXPECT_FALSE(s.ok());
}

// rxm sizes each endpoint's completion queue from FI_UNIVERSE_SIZE; with
// tcp, libfabric's default made it a 12 MiB calloc per endpoint
// (docs/benchmarks.md). Every provider gets the configured universe, read by
// libfabric at the process's first Fabric::Open (no test here sets another).
const bool kBufferSizeSetOutside = std::getenv("FI_OFI_RXM_BUFFER_SIZE") != nullptr;
const bool kUniverseSetOutside = std::getenv("FI_UNIVERSE_SIZE") != nullptr;  // before any test runs

TEST(FabricTest, EveryProviderGetsTheConfiguredUniverseSize) {
  if (kUniverseSetOutside) GTEST_SKIP() << "FI_UNIVERSE_SIZE is set in the environment, which wins";
  FabricConfig config = LoopbackConfig();
  ASSERT_EQ(config.provider, "tcp;ofi_rxm");
  auto fabric = Fabric::Open(config);
  ASSERT_TRUE(fabric.ok()) << fabric.status();
  const char* universe = std::getenv("FI_UNIVERSE_SIZE");
  ASSERT_NE(universe, nullptr);
  EXPECT_EQ(std::string(universe), std::to_string(config.universe_size));
  auto ep = (*fabric)->OpenEndpoint();
  ASSERT_TRUE(ep.ok()) << ep.status();
}

// rxm's bounce buffers are max_message bytes (it adds its own header), and a
// message of exactly max_message bytes, like one of a single byte, arrives
// whole and in order (eagerly, by libfabric 1.17's rxm: see SizeRxmBuffers).
TEST(FabricTest, RxmBuffersHoldMaxMessageAndAMessageOfThatSizeArrivesWhole) {
  if (kBufferSizeSetOutside) GTEST_SKIP() << "FI_OFI_RXM_BUFFER_SIZE is set in the environment, which wins";
  Pair p = Connect();
  ASSERT_NE(p.b, nullptr);
  const char* buffer = std::getenv("FI_OFI_RXM_BUFFER_SIZE");
  ASSERT_NE(buffer, nullptr);
  EXPECT_EQ(std::string(buffer), std::to_string(TestConfig().max_message));
  const std::vector<uint8_t> full = Pattern(TestConfig().max_message, 3);
  const std::string big(full.begin(), full.end());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(p.a->Send(p.b_from_a, big).ok());
    ASSERT_TRUE(p.a->Send(p.b_from_a, std::string(1, static_cast<char>(i))).ok());
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(p.b->Recv(absl::Seconds(3)).value_or(""), big) << i;
    EXPECT_EQ(p.b->Recv(absl::Seconds(3)).value_or(""), std::string(1, static_cast<char>(i)));
  }
  EXPECT_EQ(p.a->failed_ops() + p.b->failed_ops(), 0u);
}

TEST(FabricTest, ShmMovesBytesWithinOneHost) {
  FabricConfig config;
  config.provider = kShm;
  absl::StatusOr<std::unique_ptr<Fabric>> fabric = Fabric::Open(config);
  if (!fabric.ok()) GTEST_SKIP() << "shm provider unavailable here: " << fabric.status();
  Pair p = Connect(config);
  ASSERT_NE(p.b, nullptr);
  EXPECT_EQ(p.a->provider(), kShm);
  std::vector<uint8_t> src = Pattern(65536, 4), target(65536, 0);
  auto src_mr = *p.a->RegisterMemory(src.data(), src.size(), kLocalOnly);
  auto target_mr = *p.b->RegisterMemory(target.data(), target.size(), kRemoteWrite);
  absl::Status w = p.a->Write(p.b_from_a, To(*src_mr, *target_mr, src.size()));
  ASSERT_TRUE(w.ok()) << w;
  EXPECT_EQ(target, src);
  ASSERT_TRUE(p.a->Send(p.b_from_a, "over shm").ok());
  EXPECT_EQ(p.b->Recv(absl::Seconds(3)).value_or(""), "over shm");
  // Ordered or not, the data is placed before the message is seen.
  src[0] ^= 0xff;
  ASSERT_TRUE(p.a->WriteAndSend(p.b_from_a, {To(*src_mr, *target_mr, src.size())}, "doorbell").ok());
  EXPECT_EQ(p.b->Recv(absl::Seconds(3)).value_or(""), "doorbell");
  EXPECT_EQ(target, src);
}

}  // namespace
}  // namespace rpci::fabric

namespace rpci::fabric {
namespace {

TEST(RouteTest, LoopbackPeerIsReachedFromLoopbackOnLo) {
  absl::StatusOr<std::string> local = LocalAddressFor("dns:///127.0.0.1:7000");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(*local, "127.0.0.1");
  absl::StatusOr<std::string> netdev = NetdevWithAddress(*local);
  ASSERT_TRUE(netdev.ok()) << netdev.status();
  EXPECT_EQ(*netdev, "lo");
}

TEST(RouteTest, BadEndpointsAndUnknownAddressesAreClearErrors) {
  EXPECT_EQ(LocalAddressFor("no-port").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NetdevWithAddress("not an address").status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::string> none = NetdevWithAddress("192.0.2.77");  // TEST-NET-1
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound) << none.status();
}

}  // namespace
}  // namespace rpci::fabric
