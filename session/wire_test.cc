#include "session/wire.h"

#include <vector>

#include "gtest/gtest.h"

namespace rpci::session {
namespace {

Anchor SampleAnchor() {
  Anchor a;
  a.session_id = SessionId(0x1234);
  a.regions = {
      {RegionKind::kAnchor, kAccessRead, 0, 0x1000, 4096, 11},
      {RegionKind::kBar, kAccessRead, 0, 0x10000, 4096, 12},
      {RegionKind::kDma, kAccessRead | kAccessWrite, 0, 0x100000, 1 << 20, 13},
      {RegionKind::kMmioRing, kAccessWrite, 0, 0x400000, RingRegionSize(256, kMmioEntrySize), 14},
  };
  return a;
}

TEST(AnchorTest, RoundTripsEveryRegion) {
  Anchor a = SampleAnchor();
  absl::StatusOr<Anchor> back = DecodeAnchor(EncodeAnchor(a));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->session_id, a.session_id);
  EXPECT_EQ(back->version, kProtocolVersion);
  EXPECT_EQ(back->regions, a.regions);
}

TEST(AnchorTest, RejectsEveryTruncation) {
  std::vector<uint8_t> bytes = EncodeAnchor(SampleAnchor());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeAnchor(absl::MakeConstSpan(bytes.data(), n)).ok()) << n;
  }
}

TEST(AnchorTest, RejectsBadMagicVersionAndCounts) {
  std::vector<uint8_t> bytes = EncodeAnchor(SampleAnchor());
  std::vector<uint8_t> bad = bytes;
  bad[0] ^= 1;
  EXPECT_EQ(DecodeAnchor(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = bytes;
  bad[8] = 1;  // version 1
  EXPECT_EQ(DecodeAnchor(bad).status().code(), absl::StatusCode::kFailedPrecondition);
  bad = bytes;
  bad[12] = 0xff;  // region count 255
  EXPECT_FALSE(DecodeAnchor(bad).ok());
  bad = bytes;
  for (int i = 16; i < 24; ++i) bad[i] = 0;  // session id 0
  EXPECT_FALSE(DecodeAnchor(bad).ok());
}

TEST(AnchorTest, RejectsInvalidRegions) {
  auto with = [](auto mutate) {
    Anchor a = SampleAnchor();
    mutate(a.regions);
    return DecodeAnchor(EncodeAnchor(a)).status();
  };
  EXPECT_FALSE(with([](auto& r) { r[1].kind = static_cast<RegionKind>(9); }).ok());
  EXPECT_FALSE(with([](auto& r) { r[1].access = 0; }).ok());
  EXPECT_FALSE(with([](auto& r) { r[1].access = 4; }).ok());
  EXPECT_FALSE(with([](auto& r) { r[1].size = 0; }).ok());
  EXPECT_FALSE(with([](auto& r) { r[1].address = ~0ull - 10; }).ok());
  EXPECT_FALSE(with([](auto& r) { r[1].index = 6; }).ok());
  EXPECT_FALSE(with([](auto& r) { r[2].index = 1; }).ok());
  EXPECT_FALSE(with([](auto& r) { r.push_back(r[1]); r.back().address = 0x900000; }).ok());
  EXPECT_TRUE(with([](auto& r) { r[2].address = 0x10800; }).ok());  // offsets under their own keys
}

TEST(AnchorTest, RejectsReservedBytes) {
  std::vector<uint8_t> bytes = EncodeAnchor(SampleAnchor());
  bytes[kAnchorHeaderSize + 5] = 1;
  EXPECT_FALSE(DecodeAnchor(bytes).ok());
}

TEST(MmioWriteTest, RoundTrips32And64BitWrites) {
  for (MmioWrite w : {MmioWrite{7, 0, 4, 0x40, 0xdeadbeef}, MmioWrite{8, 2, 8, 0x48, 0x0123456789abcdefull}}) {
    uint8_t buf[kMmioEntrySize];
    EncodeMmioWrite(w, buf);
    absl::StatusOr<MmioWrite> back = DecodeMmioWrite(buf);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, w);
  }
}

TEST(MmioWriteTest, RejectsMalformedEntries) {
  auto decode = [](MmioWrite w, int poke = -1) {
    uint8_t buf[kMmioEntrySize];
    EncodeMmioWrite(w, buf);
    if (poke >= 0) buf[poke] = 1;
    return DecodeMmioWrite(buf).status();
  };
  EXPECT_FALSE(decode({0, 0, 4, 0, 0}).ok());                 // seq 0
  EXPECT_FALSE(decode({1, 0, 2, 0, 0}).ok());                 // width 2
  EXPECT_FALSE(decode({1, 0, 4, 2, 0}).ok());                 // misaligned
  EXPECT_FALSE(decode({1, 0, 8, 4, 0}).ok());                 // misaligned 64-bit
  EXPECT_FALSE(decode({1, 0, 4, 0, 1ull << 32}).ok());        // value too wide
  EXPECT_FALSE(decode({1, 6, 4, 0, 0}).ok());                 // bar 6
  EXPECT_FALSE(decode({1, 0, 4, 0, 0}, 11).ok());             // reserved byte
  uint8_t short_buf[kMmioEntrySize - 1] = {};
  EXPECT_FALSE(DecodeMmioWrite(short_buf).ok());
}

TEST(CompletionTest, RoundTripsAndRejectsBadVectors) {
  Completion c{3, 17, 0x5, 99, 0xabc};
  uint8_t buf[kCompletionEntrySize];
  EncodeCompletion(c, buf);
  absl::StatusOr<Completion> back = DecodeCompletion(buf);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, c);
  c.vector = kMaxMsixVectors;
  EncodeCompletion(c, buf);
  EXPECT_FALSE(DecodeCompletion(buf).ok());
  c.vector = 1;
  c.seq = 0;
  EncodeCompletion(c, buf);
  EXPECT_FALSE(DecodeCompletion(buf).ok());
}

TEST(RingHeaderTest, RoundTripsAndChecksPointers) {
  uint8_t buf[kRingHeaderSize];
  EncodeRingHeader({256, kMmioEntrySize, 10, 20}, buf);
  absl::StatusOr<RingHeader> h = DecodeRingHeader(buf, kMmioEntrySize);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->head, 10u);
  EXPECT_EQ(h->tail, 20u);
  EXPECT_FALSE(DecodeRingHeader(buf, kCompletionEntrySize + 1).ok());
  EncodeRingHeader({255, kMmioEntrySize, 0, 0}, buf);
  EXPECT_FALSE(DecodeRingHeader(buf, kMmioEntrySize).ok());
  EncodeRingHeader({0, kMmioEntrySize, 0, 0}, buf);
  EXPECT_FALSE(DecodeRingHeader(buf, kMmioEntrySize).ok());
  EncodeRingHeader({256, kMmioEntrySize, 21, 20}, buf);
  EXPECT_FALSE(DecodeRingHeader(buf, kMmioEntrySize).ok());
  EncodeRingHeader({256, kMmioEntrySize, 0, 257}, buf);
  EXPECT_FALSE(DecodeRingHeader(buf, kMmioEntrySize).ok());
  EXPECT_FALSE(DecodeRingHeader(absl::MakeConstSpan(buf, 10), kMmioEntrySize).ok());
}

TEST(FrameTest, RoundTripsAndRejectsGarbage) {
  Frame f;
  f.type = FrameType::kEvent;
  f.session_id = SessionId(42);
  f.counter = 3;
  f.arg0 = 5;
  f.arg1 = 6;
  auto bytes = EncodeFrame(f);
  absl::StatusOr<Frame> back = DecodeFrame(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->type, FrameType::kEvent);
  EXPECT_EQ(back->session_id, SessionId(42));
  EXPECT_EQ(back->counter, 3u);
  EXPECT_EQ(back->arg1, 6u);
  auto bad = bytes;
  bad[0] ^= 1;
  EXPECT_FALSE(DecodeFrame(bad).ok());
  bad = bytes;
  bad[6] = 99;
  EXPECT_FALSE(DecodeFrame(bad).ok());
  bad = bytes;
  bad[16] = 0;  // counter 0
  EXPECT_FALSE(DecodeFrame(bad).ok());
  EXPECT_FALSE(DecodeFrame(absl::MakeConstSpan(bytes.data(), kFrameSize - 1)).ok());
}

TEST(FrameTest, AVersionOneFrameIsRefusedByVersionNotAsGarbage) {
  // Version 1 frames were 72 bytes and carried the session key at offset 16.
  std::vector<uint8_t> v1(72, 0);
  const uint8_t header[8] = {0x52, 0x43, 0x46, 0x52, 1, 0, 1, 0};
  std::copy(header, header + 8, v1.begin());
  absl::Status s = DecodeFrame(v1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("version 1, this build speaks 2"), std::string::npos) << s;
}

}  // namespace
TEST(FrameTest, OnlyKicksAndEventsCarryAPayloadOfWholeWordsUpToTheLimit) {
  Frame f;
  f.type = FrameType::kKick;
  f.session_id = SessionId(42);
  f.counter = 1;
  auto header = EncodeFrame(f);
  auto with_payload = [&](size_t n) {
    std::vector<uint8_t> b(header.begin(), header.begin() + kFrameHeaderSize);
    b.resize(kFrameSize + n, 0x5a);
    return b;
  };
  absl::StatusOr<Frame> back = DecodeFrame(with_payload(64));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->payload, std::string(64, 0x5a));
  EXPECT_TRUE(DecodeFrame(with_payload(kMaxFramePayload)).ok());
  EXPECT_FALSE(DecodeFrame(with_payload(kMaxFramePayload + 8)).ok());
  EXPECT_FALSE(DecodeFrame(with_payload(12)).ok());
  f.type = FrameType::kHeartbeat;
  header = EncodeFrame(f);
  EXPECT_FALSE(DecodeFrame(with_payload(32)).ok());
}

TEST(MmioEntriesTest, RoundTripsConsecutiveWritesAndRejectsGapsAndOversize) {
  std::vector<MmioWrite> w = {{7, 0, 8, 0x118, 1}, {8, 0, 4, 0x100, 2}};
  std::string bytes = EncodeMmioEntries(w);
  auto span = [](const std::string& b) { return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(b.data()), b.size()); };
  absl::StatusOr<std::vector<MmioWrite>> back = DecodeMmioEntries(span(bytes));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, w);
  w[1].seq = 9;
  EXPECT_FALSE(DecodeMmioEntries(span(EncodeMmioEntries(w))).ok());
  EXPECT_FALSE(DecodeMmioEntries(span(bytes.substr(0, 40))).ok());
  std::vector<MmioWrite> many;
  for (uint64_t i = 1; i <= kMaxInlineWrites + 1; ++i) many.push_back({i, 0, 8, 0, i});
  EXPECT_FALSE(DecodeMmioEntries(span(EncodeMmioEntries(many))).ok());
}

TEST(EventPayloadTest, RoundTripsCompletionsAndPatchesAndRejectsEveryTruncation) {
  EventPayload p;
  p.completions = {{4, 1, 2, 9, 0xabc}, {5, 1, 0, 9, 0}};
  p.patches = {{0, 0x120, std::string("\x01\x02\x03", 3)}, {2, 0, std::string(8, 'x')}};
  const std::string bytes = EncodeEventPayload(p);
  auto span = [](const std::string& b) { return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(b.data()), b.size()); };
  absl::StatusOr<EventPayload> back = DecodeEventPayload(span(bytes));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->completions, p.completions);
  EXPECT_EQ(back->patches, p.patches);
  for (size_t n = 0; n < bytes.size(); ++n) EXPECT_FALSE(DecodeEventPayload(span(bytes.substr(0, n))).ok()) << n;
  EXPECT_FALSE(DecodeEventPayload(span(bytes + std::string(8, '\0'))).ok());
  std::string bad_pad = bytes;
  bad_pad[8 + 2 * kCompletionEntrySize + 8 + 3] = 1;  // padding after the 3-byte patch
  EXPECT_FALSE(DecodeEventPayload(span(bad_pad)).ok());
  EventPayload gap = p;
  gap.completions[1].seq = 7;
  EXPECT_FALSE(DecodeEventPayload(span(EncodeEventPayload(gap))).ok());
}

}  // namespace rpci::session
