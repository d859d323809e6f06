#include "session/checkpoint.h"

#include <cstdlib>
#include <fstream>

#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci::session {
namespace {

SessionRecord Sample(uint64_t id) {
  SessionRecord r;
  r.session_id = SessionId(id);
  r.key = *SessionKey::Generate();
  r.grant_id = "g-1";
  r.device_id = "emu-0";
  r.compute_node = "node-a";
  r.applied_seq = 77;
  r.completion_seq = 5;
  r.opened_unix_seconds = 1700000000;
  r.last_seen_unix_seconds = 1700000010;
  return r;
}

TEST(CheckpointTest, WriteThenReadRestoresEverySession) {
  std::string path = ::rpci::testing::MakeTempDir("ckpt") + "/sessions.json";
  std::vector<SessionRecord> records{Sample(1), Sample(2)};
  ASSERT_TRUE(WriteCheckpoint(path, records).ok());
  absl::StatusOr<std::vector<SessionRecord>> back = ReadCheckpoint(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[1].session_id, SessionId(2));
  EXPECT_TRUE((*back)[0].key.Matches(records[0].key));
  EXPECT_EQ((*back)[0].applied_seq, 77u);
  EXPECT_EQ((*back)[0].compute_node, "node-a");
}

TEST(CheckpointTest, WhetherAClientEverAttachedSurvivesTheRoundTrip) {
  std::vector<SessionRecord> records{Sample(1), Sample(2)};
  records[0].ever_attached = false;
  records[1].ever_attached = true;
  absl::StatusOr<std::vector<SessionRecord>> back = DecodeCheckpoint(EncodeCheckpoint(records));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_FALSE((*back)[0].ever_attached);
  EXPECT_TRUE((*back)[1].ever_attached);
}

// Written by an agent before format 2: the record does not say whether a
// client attached, so it reads as attached (never reaped as an unattached
// reservation); every other field reads as before.
TEST(CheckpointTest, AFormatOneRecordReadsAsEverAttached) {
  const std::string key = Sample(0).key.Hex();
  absl::StatusOr<std::vector<SessionRecord>> back = DecodeCheckpoint(
      R"({"format":1,"sessions":[{"session_id":"00000000000000ff","key":")" + key +
      R"(","grant_id":"g-1","device_id":"emu-0","compute_node":"node-a","applied_seq":7,)"
      R"("completion_seq":2,"opened_unix_seconds":1700000000,"last_seen_unix_seconds":1700000010}]})");
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 1u);
  EXPECT_TRUE((*back)[0].ever_attached);
  EXPECT_EQ((*back)[0].session_id, SessionId(0xff));
  EXPECT_EQ((*back)[0].applied_seq, 7u);
  EXPECT_EQ((*back)[0].grant_id, "g-1");
}

// Format 2 must say it: a record without it, or with a non-boolean, is
// DATA_LOSS naming the field.
TEST(CheckpointTest, AFormatTwoRecordWithoutEverAttachedIsDataLoss) {
  const std::string good = EncodeCheckpoint({Sample(6)});
  const std::string field = "\"ever_attached\": true";
  ASSERT_NE(good.find(field), std::string::npos) << good;
  for (const std::string& instead : {std::string("\"ever_attachex\": true"), std::string("\"ever_attached\": 1")}) {
    std::string text = good;
    text.replace(text.find(field), field.size(), instead);
    absl::Status st = DecodeCheckpoint(text).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << text;
    EXPECT_NE(st.message().find("ever_attached"), std::string::npos) << st;
  }
}

TEST(CheckpointTest, MissingFileIsEmptyAndNoTempFileIsLeft) {
  std::string dir = ::rpci::testing::MakeTempDir("ckpt");
  EXPECT_TRUE(ReadCheckpoint(dir + "/none.json")->empty());
  ASSERT_TRUE(WriteCheckpoint(dir + "/s.json", {Sample(3)}).ok());
  std::ifstream tmp(dir + "/s.json.tmp");
  EXPECT_FALSE(tmp.good());
}

TEST(CheckpointTest, CorruptFilesAreDataLossNotCrashes) {
  std::string good = EncodeCheckpoint({Sample(4)});
  for (size_t n : {size_t{0}, size_t{1}, good.size() / 2, good.size() - 3}) {
    EXPECT_EQ(DecodeCheckpoint(good.substr(0, n)).status().code(), absl::StatusCode::kDataLoss) << n;
  }
  EXPECT_FALSE(DecodeCheckpoint(R"({"format":3,"sessions":[]})").ok());
  EXPECT_FALSE(DecodeCheckpoint(R"({"format":0,"sessions":[]})").ok());
  EXPECT_FALSE(DecodeCheckpoint(R"({"format":1,"sessions":[{"session_id":"00000000000000ff"}]})").ok());
  EXPECT_FALSE(DecodeCheckpoint(R"({"format":1,"sessions":[1]})").ok());
  std::string dup = EncodeCheckpoint({Sample(4), Sample(4)});
  EXPECT_FALSE(DecodeCheckpoint(dup).ok());
}

TEST(CheckpointTest, WriteFailsCleanlyInMissingDirectory) {
  EXPECT_FALSE(WriteCheckpoint("/nonexistent-rpci-dir/x/sessions.json", {Sample(5)}).ok());
}

}  // namespace
}  // namespace rpci::session
