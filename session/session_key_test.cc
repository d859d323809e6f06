#include "session/session_key.h"

#include "session/session_id.h"

#include "gtest/gtest.h"

namespace rpci::session {
namespace {

TEST(SessionKeyTest, GeneratedKeysDifferAndRoundTripThroughHex) {
  absl::StatusOr<SessionKey> a = SessionKey::Generate();
  absl::StatusOr<SessionKey> b = SessionKey::Generate();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(a->Matches(*b));
  absl::StatusOr<SessionKey> back = SessionKey::FromHex(a->Hex());
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->Matches(*a));
  EXPECT_EQ(a->Hex().size(), 64u);
}

TEST(SessionKeyTest, OneBitDifferenceDoesNotMatch) {
  SessionKey a = *SessionKey::Generate();
  KeyBytes other = a.bytes();
  other[31] ^= 0x80;
  EXPECT_FALSE(a.Matches(other));
  other = a.bytes();
  other[0] ^= 1;
  EXPECT_FALSE(a.Matches(other));
}

TEST(SessionKeyTest, RejectsMalformedText) {
  EXPECT_FALSE(SessionKey::FromHex("abcd").ok());
  EXPECT_FALSE(SessionKey::FromHex(std::string(64, 'g')).ok());
  EXPECT_FALSE(SessionKey::FromBytes("short").ok());
  EXPECT_TRUE(SessionKey::FromBytes(std::string(32, 'x')).ok());
}

TEST(SessionIdTest, ParsesOnlySixteenHexDigits) {
  EXPECT_EQ(SessionId(0xabc).ToString(), "0000000000000abc");
  EXPECT_EQ(SessionId::Parse("0000000000000ABC")->value(), 0xabcu);
  EXPECT_FALSE(SessionId::Parse("0000000000000000").ok());
  EXPECT_FALSE(SessionId::Parse("xyz").ok());
  EXPECT_FALSE(SessionId::Parse("00000000000000zz").ok());
  EXPECT_FALSE(SessionId::Parse("").ok());
  EXPECT_TRUE(SessionId::ParseOptional("")->empty());
  EXPECT_FALSE(SessionId::ParseOptional("0000000000000000").ok());
  EXPECT_FALSE(SessionId::Random()->empty());
  EXPECT_NE(*RandomU64(), 0u);
}

}  // namespace
}  // namespace rpci::session
