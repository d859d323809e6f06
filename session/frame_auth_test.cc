#include "session/frame_auth.h"

#include <thread>

#include "gtest/gtest.h"

namespace rpci::session {
namespace {

absl::Span<const uint8_t> Span(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

struct Pair {
  FrameChannel client, agent;
};

Pair Channels(const SessionKey& key, const Nonce& nonce, SessionId id) {
  return {*FrameChannel::Create(key, nonce, id, FrameChannel::Side::kClient),
          *FrameChannel::Create(key, nonce, id, FrameChannel::Side::kAgent)};
}

std::string Hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex.push_back(kDigits[c >> 4]);
    hex.push_back(kDigits[c & 15]);
  }
  return hex;
}

FrameChannel::Verdict Deliver(FrameChannel& to, const std::string& bytes) {
  absl::StatusOr<Frame> f = DecodeFrame(Span(bytes));
  EXPECT_TRUE(f.ok()) << f.status();
  return to.Check(Span(bytes), *f);
}

TEST(ProofTest, OnlyTheKeyHolderProvesAndOnlyForWhatWasAsked) {
  const SessionKey key = *SessionKey::Generate();
  const Nonce nonce = *NewNonce();
  const SessionId id(7);
  const std::string proof = Prove(key, ProofPurpose::kAttach, nonce, id, "client-addr");
  EXPECT_TRUE(VerifyProof(key, ProofPurpose::kAttach, nonce, id, "client-addr", proof));
  EXPECT_FALSE(VerifyProof(*SessionKey::Generate(), ProofPurpose::kAttach, nonce, id, "client-addr", proof));
  EXPECT_FALSE(VerifyProof(key, ProofPurpose::kAttach, *NewNonce(), id, "client-addr", proof));
  EXPECT_FALSE(VerifyProof(key, ProofPurpose::kAttach, nonce, SessionId(8), "client-addr", proof));
  EXPECT_FALSE(VerifyProof(key, ProofPurpose::kAttach, nonce, id, "other-endpoint", proof));
  EXPECT_FALSE(VerifyProof(key, ProofPurpose::kClose, nonce, id, "client-addr", proof));
  EXPECT_FALSE(VerifyProof(key, ProofPurpose::kAttach, nonce, id, "client-addr", proof.substr(1)));
  EXPECT_EQ(proof.find(key.Bytes()), std::string::npos);
}

TEST(FrameChannelTest, FramesVerifyInOrderAndTheKeyIsNotInThem) {
  const SessionKey key = *SessionKey::Generate();
  Pair p = Channels(key, *NewNonce(), SessionId(7));
  const std::string kick = p.client.Seal(FrameType::kKick, 10, 2);
  EXPECT_EQ(kick.size(), kFrameSize);
  EXPECT_EQ(kick.find(key.Bytes().substr(0, 8)), std::string::npos);
  EXPECT_EQ(Deliver(p.agent, kick), FrameChannel::Verdict::kOk);
  EXPECT_EQ(Deliver(p.client, p.agent.Seal(FrameType::kEvent, 10, 0)), FrameChannel::Verdict::kOk);
  EXPECT_EQ(Deliver(p.agent, p.client.Seal(FrameType::kHeartbeat, 1, 0)), FrameChannel::Verdict::kOk);
}

TEST(FrameChannelTest, AReplayedFrameIsRefused) {
  Pair p = Channels(*SessionKey::Generate(), *NewNonce(), SessionId(7));
  const std::string first = p.client.Seal(FrameType::kKick, 1, 0);
  const std::string second = p.client.Seal(FrameType::kKick, 2, 0);
  EXPECT_EQ(Deliver(p.agent, first), FrameChannel::Verdict::kOk);
  EXPECT_EQ(Deliver(p.agent, second), FrameChannel::Verdict::kOk);
  EXPECT_EQ(Deliver(p.agent, first), FrameChannel::Verdict::kReplay);
  EXPECT_EQ(Deliver(p.agent, second), FrameChannel::Verdict::kReplay);
}

TEST(FrameChannelTest, ForgedTamperedReflectedOrOtherAttachFramesFailTheMac) {
  const SessionKey key = *SessionKey::Generate();
  const Nonce nonce = *NewNonce();
  Pair p = Channels(key, nonce, SessionId(7));
  std::string kick = p.client.Seal(FrameType::kKick, 1, 0);
  std::string tampered = kick;
  tampered[24] ^= 1;  // arg0
  EXPECT_EQ(Deliver(p.agent, tampered), FrameChannel::Verdict::kBadMac);
  std::string forged = kick;
  forged[kFrameMacOffset] ^= 1;
  EXPECT_EQ(Deliver(p.agent, forged), FrameChannel::Verdict::kBadMac);
  // The agent's own frame sent back to it (other direction key).
  EXPECT_EQ(Deliver(p.agent, p.agent.Seal(FrameType::kKick, 1, 0)), FrameChannel::Verdict::kBadMac);
  // A frame of an earlier attach (other nonce) of the same session.
  Pair earlier = Channels(key, *NewNonce(), SessionId(7));
  EXPECT_EQ(Deliver(p.agent, earlier.client.Seal(FrameType::kKick, 5, 0)), FrameChannel::Verdict::kBadMac);
  EXPECT_EQ(Deliver(p.agent, kick), FrameChannel::Verdict::kOk);
}

TEST(FrameChannelTest, APayloadIsUnderTheMacAndCannotBeCutOrChanged) {
  Pair p = Channels(*SessionKey::Generate(), *NewNonce(), SessionId(7));
  const std::string entries(64, '\x11');
  const std::string kick = p.client.Seal(FrameType::kKick, 2, 0, entries);
  EXPECT_EQ(kick.size(), kFrameSize + entries.size());
  std::string changed = kick;
  changed[kFrameHeaderSize + 5] ^= 1;
  EXPECT_EQ(Deliver(p.agent, changed), FrameChannel::Verdict::kBadMac);
  // The last 32 bytes of payload dropped, the MAC moved up: still refused.
  std::string cut = kick.substr(0, kFrameHeaderSize + 32) + kick.substr(kick.size() - kFrameMacSize);
  EXPECT_EQ(Deliver(p.agent, cut), FrameChannel::Verdict::kBadMac);
  EXPECT_EQ(Deliver(p.agent, kick), FrameChannel::Verdict::kOk);
}

// One end of the known-answer tests' session: fixed key, nonce and id.
FrameChannel KnownAnswerChannel(FrameChannel::Side side) {
  KeyBytes k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i * 7 + 1);
  Nonce n;
  for (size_t i = 0; i < n.size(); ++i) n[i] = static_cast<uint8_t>(i * 3 + 5);
  return *FrameChannel::Create(SessionKey(k), n, SessionId(0x1122334455667788ull), side);
}

// Known answer from an independent implementation (Python hmac/hashlib,
// RFC 5869 HKDF): the wire format is the spec, not this code.
TEST(FrameChannelTest, SealMatchesAnIndependentHkdfHmacImplementation) {
  FrameChannel client = KnownAnswerChannel(FrameChannel::Side::kClient);
  const std::string sealed = client.Seal(FrameType::kKick, 5, 0);
  EXPECT_EQ(Hex(sealed),
            "52434652020001008877665544332211010000000000000005000000000000000000000000000000"
            "148912668226e88ba68cfb3f3eb747e8");
}

// The warm-up (run by the agent at start and by a process's first attach on
// a thread of its own) may run while proofs and channels are made: it
// changes no answer.
TEST(FrameChannelTest, AWarmUpAlongsideChangesNoProofOrSeal) {
  std::thread a(WarmUpCrypto), b(WarmUpCrypto);
  FrameChannel client = KnownAnswerChannel(FrameChannel::Side::kClient);
  const std::string sealed = client.Seal(FrameType::kKick, 5, 0);
  const SessionKey key = *SessionKey::Generate();
  const Nonce nonce = *NewNonce();
  const std::string proof = Prove(key, ProofPurpose::kAttach, nonce, SessionId(7), "client-addr");
  a.join();
  b.join();
  EXPECT_EQ(Hex(sealed),
            "52434652020001008877665544332211010000000000000005000000000000000000000000000000"
            "148912668226e88ba68cfb3f3eb747e8");
  EXPECT_TRUE(VerifyProof(key, ProofPurpose::kAttach, nonce, SessionId(7), "client-addr", proof));
  EXPECT_FALSE(VerifyProof(SessionKey(), ProofPurpose::kAttach, nonce, SessionId(7), "client-addr", proof));
}

// The agent's direction and a payload under the MAC, from the same
// independent implementation (Python hmac/hashlib): the frame MAC's
// precomputed key pads give RFC 2104's HMAC-SHA256 exactly.
TEST(FrameChannelTest, AnAgentEventWithPayloadMatchesAnIndependentHmac) {
  FrameChannel agent = KnownAnswerChannel(FrameChannel::Side::kAgent);
  std::string payload;
  for (char c = 0; c < 16; ++c) payload.push_back(c);
  const std::string sealed = agent.Seal(FrameType::kEvent, 9, 3, payload);
  EXPECT_EQ(Hex(sealed),
            "52434652020002008877665544332211010000000000000009000000000000000300000000000000"
            "000102030405060708090a0b0c0d0e0f"
            "aeac4f877f417bfe9e09402b14ee4d3b");
}

}  // namespace
}  // namespace rpci::session
