// What an unauthenticated peer controls in the session's authentication:
// control frames (header decode, then MAC and counter check) and the
// challenge-response fields of the SessionControl requests. Nothing an
// attacker can write without the key may verify.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proto/rpci/v1/session.pb.h"
#include "session/frame_auth.h"
#include "session/session_id.h"
#include "session/wire.h"

namespace {

using namespace rpci::session;

void Check(bool ok) {
  if (!ok) std::abort();
}

SessionKey FixedKey() {
  KeyBytes k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i * 7 + 1);
  return SessionKey(k);
}

Nonce FixedNonce() {
  Nonce n;
  for (size_t i = 0; i < n.size(); ++i) n[i] = static_cast<uint8_t>(i * 3 + 5);
  return n;
}

// The request's proof fields against the fixed key: a proof that verifies
// must be the one Prove makes (the fuzzer cannot invert HMAC).
void CheckProof(const std::string& id_text, const std::string& nonce_bytes, const std::string& proof,
                ProofPurpose purpose, const std::string& address) {
  absl::StatusOr<SessionId> id = SessionId::Parse(id_text);
  absl::StatusOr<Nonce> nonce = NonceFromBytes(nonce_bytes);
  if (!id.ok() || !nonce.ok()) return;
  if (VerifyProof(FixedKey(), purpose, *nonce, *id, address, proof)) {
    Check(proof == Prove(FixedKey(), purpose, *nonce, *id, address));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::Span<const uint8_t> bytes(data, size);
  const SessionId id(0x1122334455667788ull);
  if (absl::StatusOr<Frame> f = DecodeFrame(bytes); f.ok()) {
    Check(size == kFrameSize && f->counter != 0);
    FrameChannel agent = *FrameChannel::Create(FixedKey(), FixedNonce(), id, FrameChannel::Side::kAgent);
    FrameChannel client = *FrameChannel::Create(FixedKey(), FixedNonce(), id, FrameChannel::Side::kClient);
    // The one frame with this header that verifies is the one the client seals.
    std::string sealed;
    for (uint64_t i = 0; i < f->counter && i < 4; ++i) sealed = client.Seal(f->type, f->arg0, f->arg1);
    const std::string input(reinterpret_cast<const char*>(data), size);
    const FrameChannel::Verdict v = agent.Check(bytes, *f);
    if (input != sealed || f->session_id != id) Check(v != FrameChannel::Verdict::kOk);
    Check(agent.Check(bytes, *f) != FrameChannel::Verdict::kOk);  // never twice
  }
  const std::string input(reinterpret_cast<const char*>(data), size);
  rpci::v1::OpenSessionRequest open;
  if (open.ParseFromString(input)) {
    CheckProof(open.resume_session_id(), open.nonce(), open.proof(), ProofPurpose::kAttach,
               open.client_fabric_address());
  }
  rpci::v1::CloseSessionRequest close;
  if (close.ParseFromString(input)) CheckProof(close.session_id(), close.nonce(), close.proof(), ProofPurpose::kClose, "");
  rpci::v1::SessionStatusRequest status;
  if (status.ParseFromString(input)) {
    CheckProof(status.session_id(), status.nonce(), status.proof(), ProofPurpose::kStatus, "");
  }
  rpci::v1::ChallengeResponse challenge;
  if (challenge.ParseFromString(input)) (void)NonceFromBytes(challenge.nonce());
  return 0;
}
