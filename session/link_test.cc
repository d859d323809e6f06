#include "session/link.h"

#include <rdma/fi_domain.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace rpci::session {
namespace {

struct Pair {
  std::unique_ptr<Link> a, b;
  PeerAddr a_to_b = 0, b_to_a = 0;
};

Pair Connect() {
  Pair p;
  LinkOptions opts;
  opts.op_timeout = absl::Seconds(5);
  auto a = Link::Create(opts);
  auto b = Link::Create(opts);
  EXPECT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(b.ok()) << b.status();
  p.a = std::move(*a);
  p.b = std::move(*b);
  p.a_to_b = *p.a->AddPeer(p.b->address());
  p.b_to_a = *p.b->AddPeer(p.a->address());
  return p;
}

TEST(LinkTest, OneSidedWriteAndReadMoveBytesBetweenEndpoints) {
  Pair p = Connect();
  std::vector<uint8_t> src(1 << 20), dst(1 << 20, 0), back(1 << 20, 0);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7);
  auto src_mr = *p.a->Register(src.data(), src.size(), 0);
  auto back_mr = *p.a->Register(back.data(), back.size(), 0);
  auto dst_mr = *p.b->Register(dst.data(), dst.size(), FI_REMOTE_READ | FI_REMOTE_WRITE);
  absl::Status w = p.a->Write(p.a_to_b, {{src_mr.get(), 0, src.size(), dst_mr->remote_address(), dst_mr->key()}});
  ASSERT_TRUE(w.ok()) << w;
  EXPECT_EQ(dst, src);
  ASSERT_TRUE(p.a->Read(p.a_to_b, {{back_mr.get(), 0, 4096, dst_mr->remote_address() + 4096, dst_mr->key()}}).ok());
  EXPECT_EQ(0, std::memcmp(back.data(), src.data() + 4096, 4096));
}

TEST(LinkTest, MessagesArriveAfterTheWritesBeforeThem) {
  Pair p = Connect();
  std::vector<uint8_t> src(4096, 0xab), dst(4096, 0);
  auto src_mr = *p.a->Register(src.data(), src.size(), 0);
  auto dst_mr = *p.b->Register(dst.data(), dst.size(), FI_REMOTE_WRITE);
  ASSERT_TRUE(p.a->Write(p.a_to_b, {{src_mr.get(), 0, 4096, dst_mr->remote_address(), dst_mr->key()}}).ok());
  ASSERT_TRUE(p.a->Send(p.a_to_b, "hello", 5).ok());
  absl::StatusOr<std::string> msg = p.b->Receive(absl::Seconds(5));
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(*msg, "hello");
  EXPECT_EQ(dst[4095], 0xab);
}

TEST(LinkTest, WrongKeyOrOutOfBoundsAccessFailsAndLeavesMemoryAlone) {
  Pair p = Connect();
  std::vector<uint8_t> src(8192, 0x55), dst(4096, 0);
  auto src_mr = *p.a->Register(src.data(), src.size(), 0);
  auto dst_mr = *p.b->Register(dst.data(), dst.size(), FI_REMOTE_WRITE);
  EXPECT_FALSE(p.a->Write(p.a_to_b, {{src_mr.get(), 0, 64, dst_mr->remote_address(), dst_mr->key() ^ 1}}).ok());
  EXPECT_FALSE(p.a->Write(p.a_to_b, {{src_mr.get(), 0, 8192, dst_mr->remote_address(), dst_mr->key()}}).ok());
  EXPECT_EQ(std::vector<uint8_t>(4096, 0), dst);
}

// One round trip for "data, then doorbell": the receiver of the message must
// already see every byte of the writes posted with it.
TEST(LinkTest, WriteAndSendPlacesTheDataBeforeTheMessageArrives) {
  Pair p = Connect();
  EXPECT_TRUE(p.a->ordered_writes());  // tcp;ofi_rxm grants WAW and SAW
  std::vector<uint8_t> src(1 << 20), dst(1 << 20, 0), tail(8, 0x77), dst_tail(8, 0);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 13 + 1);
  auto src_mr = *p.a->Register(src.data(), src.size(), 0);
  auto tail_mr = *p.a->Register(tail.data(), tail.size(), 0);
  auto dst_mr = *p.b->Register(dst.data(), dst.size(), FI_REMOTE_WRITE);
  auto dst_tail_mr = *p.b->Register(dst_tail.data(), dst_tail.size(), FI_REMOTE_WRITE);
  for (int round = 0; round < 5; ++round) {
    src[0] = static_cast<uint8_t>(round);
    tail[0] = static_cast<uint8_t>(round);
    ASSERT_TRUE(p.a
                    ->WriteAndSend(p.a_to_b,
                                   {{src_mr.get(), 0, src.size(), dst_mr->remote_address(), dst_mr->key()},
                                    {tail_mr.get(), 0, 8, dst_tail_mr->remote_address(), dst_tail_mr->key()}},
                                   "go", 2)
                    .ok());
    absl::StatusOr<std::string> msg = p.b->Receive(absl::Seconds(5));
    ASSERT_TRUE(msg.ok()) << msg.status();
    EXPECT_EQ(dst, src);
    EXPECT_EQ(dst_tail, tail);
  }
}

TEST(LinkTest, LegacyMrModeValuesExpandToTheirBits) {
  EXPECT_EQ(EffectiveMrMode(FI_MR_BASIC), uint64_t{FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY});
  EXPECT_EQ(EffectiveMrMode(FI_MR_SCALABLE), 0u);
  EXPECT_EQ(EffectiveMrMode(FI_MR_LOCAL | FI_MR_ENDPOINT), uint64_t{FI_MR_LOCAL | FI_MR_ENDPOINT});
}

// tcp;ofi_rxm lets the application choose keys: they must come from
// getrandom, not the provider's counter (1, 2, 3 ...), so a peer cannot guess
// another session's key.
TEST(LinkTest, RegionKeysOnTcpAreRandomNotSequential) {
  Pair p = Connect();
  std::vector<uint8_t> a(64), b(64);
  auto mr_a = *p.b->Register(a.data(), a.size(), FI_REMOTE_WRITE);
  auto mr_b = *p.b->Register(b.data(), b.size(), FI_REMOTE_WRITE);
  EXPECT_NE(mr_a->key(), mr_b->key());
  EXPECT_GT(mr_a->key(), uint64_t{1} << 20);
  EXPECT_GT(mr_b->key(), uint64_t{1} << 20);
}

TEST(LinkTest, ReceiveTimesOutWithoutMessages) {
  Pair p = Connect();
  EXPECT_EQ(p.a->Receive(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace rpci::session
