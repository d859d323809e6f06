#ifndef RPCI_SESSION_FRAME_AUTH_H_
#define RPCI_SESSION_FRAME_AUTH_H_

// How the two ends of a session prove they hold its key without sending it:
// challenge-response proofs for the control RPCs (attach/resume, close,
// status) and MAC'd, counted control frames on the data path. HMAC-SHA256 and
// HKDF-SHA256 (RFC 5869) from OpenSSL. docs/sessions.md describes both.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "session/session_id.h"
#include "session/session_key.h"
#include "session/wire.h"

namespace rpci::session {

inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kProofSize = 32;
using Nonce = std::array<uint8_t, kNonceSize>;

// A fresh challenge from the kernel CSPRNG.
absl::StatusOr<Nonce> NewNonce();
// Exactly kNonceSize bytes; INVALID_ARGUMENT otherwise.
absl::StatusOr<Nonce> NonceFromBytes(std::string_view bytes);
inline std::string NonceBytes(const Nonce& n) { return std::string(n.begin(), n.end()); }

// What a proof authorizes; part of the MAC'd text, so a proof for one is
// worthless for another.
enum class ProofPurpose : uint8_t { kAttach = 1, kClose = 2, kStatus = 3, kDetach = 4 };

// HMAC-SHA256(key, "rpci-proof-v2" | purpose | nonce | session id (u64 LE) |
// client_address): the client's answer to the agent's nonce. For kAttach,
// `client_address` is the fabric address the agent will send to; else "".
std::string Prove(const SessionKey& key, ProofPurpose purpose, const Nonce& nonce, SessionId id,
                  std::string_view client_address);
// Pays OpenSSL's first use in this process (loading its default provider,
// fetching HMAC-SHA256 and HKDF-SHA256: 1.7-2.8 ms of CPU, measured in a
// process's first attach; docs/benchmarks.md) with a throwaway proof and
// key derivation, so a later Prove or FrameChannel::Create does not.
// Thread-safe; any number of calls.
void WarmUpCrypto();

// Constant time; false for a proof of the wrong length.
bool VerifyProof(const SessionKey& key, ProofPurpose purpose, const Nonce& nonce, SessionId id,
                 std::string_view client_address, std::string_view proof);

// The control frames of one attach, as one end sees them: outgoing frames
// get this end's next counter and a MAC under this end's direction key;
// incoming frames must carry the other direction's MAC and a counter above
// every one accepted before. The direction keys are HKDF-SHA256 of the
// session key with the attach's nonce as salt, so a frame from an earlier
// attach (or another session) never verifies. Not thread-safe.
class FrameChannel {
 public:
  enum class Side : uint8_t { kClient, kAgent };
  enum class Verdict : uint8_t { kOk, kBadMac, kReplay };

  // INTERNAL only if OpenSSL cannot derive the keys.
  static absl::StatusOr<FrameChannel> Create(const SessionKey& key, const Nonce& attach_nonce, SessionId id,
                                             Side side);

  // The frame's bytes as the fabric message that carries them. `payload`
  // (kKick, kEvent only; a multiple of 8, at most kMaxFramePayload bytes)
  // goes between header and MAC, under the MAC.
  std::string Seal(FrameType type, uint64_t arg0, uint64_t arg1, std::string_view payload = {});
  // `bytes` decoded as `frame` (DecodeFrame). kOk moves the receive counter.
  Verdict Check(absl::Span<const uint8_t> bytes, const Frame& frame);

  uint64_t sent() const { return sent_; }
  uint64_t received() const { return received_; }

 private:
  class MacKey;
  FrameChannel() = default;
  SessionId id_;
  // The direction keys, ready to MAC with (shared by copies; never changed).
  std::shared_ptr<const MacKey> send_key_, receive_key_;
  uint64_t sent_ = 0, received_ = 0;
};

const char* VerdictName(FrameChannel::Verdict verdict);

}  // namespace rpci::session

#endif  // RPCI_SESSION_FRAME_AUTH_H_
