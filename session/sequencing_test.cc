#include "session/sequencing.h"

#include "gtest/gtest.h"

namespace rpci::session {
namespace {

MmioWrite W(uint64_t offset, uint64_t value) { return MmioWrite{0, 0, 4, offset, value}; }

TEST(WriteLogTest, NumbersWritesInProgramOrder) {
  WriteLog log;
  EXPECT_EQ(log.Append(W(0, 1)).seq, 1u);
  EXPECT_EQ(log.Append(W(4, 2)).seq, 2u);
  EXPECT_EQ(log.Append(W(8, 3)).seq, 3u);
  std::vector<MmioWrite> all = log.From(1);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].offset, 4u);
}

TEST(WriteLogTest, AckDropsOnlyAcknowledgedWrites) {
  WriteLog log;
  for (int i = 0; i < 5; ++i) log.Append(W(i * 4, i));
  ASSERT_TRUE(log.Ack(3).ok());
  EXPECT_EQ(log.outstanding(), 2u);
  ASSERT_TRUE(log.Ack(2).ok());  // stale ack: ignored
  EXPECT_EQ(log.acked(), 3u);
  EXPECT_EQ(log.Ack(6).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(WriteLogTest, ResumeReplaysExactlyTheUnappliedWrites) {
  WriteLog log;
  for (int i = 0; i < 6; ++i) log.Append(W(i * 4, i));
  ASSERT_TRUE(log.Ack(2).ok());
  // The agent applied 4 before the connection dropped but its ack was lost.
  absl::StatusOr<std::vector<MmioWrite>> replay = log.Resume(4);
  ASSERT_TRUE(replay.ok()) << replay.status();
  ASSERT_EQ(replay->size(), 2u);
  EXPECT_EQ((*replay)[0].seq, 5u);
  EXPECT_EQ((*replay)[1].seq, 6u);
  EXPECT_EQ(log.Append(W(0, 0)).seq, 7u);
}

TEST(WriteLogTest, ResumeBelowAcknowledgedIsDataLoss) {
  WriteLog log;
  for (int i = 0; i < 4; ++i) log.Append(W(0, i));
  ASSERT_TRUE(log.Ack(3).ok());
  EXPECT_EQ(log.Resume(1).status().code(), absl::StatusCode::kDataLoss);
}

TEST(ApplyGateTest, AppliesOnlyTheNextWriteAndSkipsReplays) {
  ApplyGate gate;
  EXPECT_EQ(*gate.Check(1), ApplyGate::Verdict::kApply);
  gate.MarkApplied(1);
  EXPECT_EQ(*gate.Check(1), ApplyGate::Verdict::kDuplicate);
  EXPECT_EQ(gate.Check(3).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(gate.Check(0).ok());
  EXPECT_EQ(*gate.Check(2), ApplyGate::Verdict::kApply);
}

TEST(ReplayTest, ReconnectMidStreamAppliesEveryWriteExactlyOnce) {
  WriteLog log;
  ApplyGate gate;
  std::vector<uint64_t> applied;
  for (int i = 0; i < 10; ++i) log.Append(W(0, i));
  // First connection: agent applies 1..6, ack reaches the client only for 1..3.
  for (const MmioWrite& w : log.From(1)) {
    if (w.seq > 6) break;
    if (*gate.Check(w.seq) == ApplyGate::Verdict::kApply) {
      applied.push_back(w.seq);
      gate.MarkApplied(w.seq);
    }
  }
  ASSERT_TRUE(log.Ack(3).ok());
  // Reconnect: the client replays from what it knows is acked (4..10), the
  // gate drops 4..6 and applies the rest.
  for (const MmioWrite& w : log.From(log.acked() + 1)) {
    if (*gate.Check(w.seq) == ApplyGate::Verdict::kApply) {
      applied.push_back(w.seq);
      gate.MarkApplied(w.seq);
    }
  }
  ASSERT_EQ(applied.size(), 10u);
  for (size_t i = 0; i < applied.size(); ++i) EXPECT_EQ(applied[i], i + 1);
}

}  // namespace
}  // namespace rpci::session
