#include "session/frame_auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include <cstring>

#include "absl/strings/str_format.h"

namespace rpci::session {
namespace {

constexpr char kProofLabel[] = "rpci-proof-v2";
constexpr char kClientToAgent[] = "rpci-frames-v2 client->agent";
constexpr char kAgentToClient[] = "rpci-frames-v2 agent->client";

std::array<uint8_t, 32> Hmac(const uint8_t* key, size_t key_len, const uint8_t* data, size_t len) {
  std::array<uint8_t, 32> out{};
  unsigned int n = 0;
  HMAC(EVP_sha256(), key, static_cast<int>(key_len), data, len, out.data(), &n);
  return out;
}

std::string ProofText(ProofPurpose purpose, const Nonce& nonce, SessionId id, std::string_view client_address) {
  std::string text(kProofLabel, sizeof(kProofLabel));  // with its NUL, as a separator
  text.push_back(static_cast<char>(purpose));
  text.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  for (int i = 0; i < 8; ++i) text.push_back(static_cast<char>(id.value() >> (8 * i)));
  text.append(client_address);
  return text;
}

// HKDF-SHA256(ikm = key, salt = nonce, info = label | session id) -> 32 bytes.
absl::StatusOr<KeyBytes> DeriveKey(const SessionKey& key, const Nonce& salt, const char* label, SessionId id) {
  std::string info(label);
  for (int i = 0; i < 8; ++i) info.push_back(static_cast<char>(id.value() >> (8 * i)));
  KeyBytes out{};
  size_t len = out.size();
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  const bool ok = ctx != nullptr && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) > 0 &&
                  EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt.data(), static_cast<int>(salt.size())) > 0 &&
                  EVP_PKEY_CTX_set1_hkdf_key(ctx, key.bytes().data(), static_cast<int>(key.bytes().size())) > 0 &&
                  EVP_PKEY_CTX_add1_hkdf_info(ctx, reinterpret_cast<const uint8_t*>(info.data()),
                                              static_cast<int>(info.size())) > 0 &&
                  EVP_PKEY_derive(ctx, out.data(), &len) > 0 && len == out.size();
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return absl::InternalError("session frames: HKDF-SHA256 failed in OpenSSL");
  return out;
}

}  // namespace

absl::StatusOr<Nonce> NewNonce() {
  absl::StatusOr<SessionKey> random = SessionKey::Generate();  // 32 CSPRNG bytes
  if (!random.ok()) return random.status();
  Nonce n;
  std::memcpy(n.data(), random->bytes().data(), n.size());
  return n;
}

absl::StatusOr<Nonce> NonceFromBytes(std::string_view bytes) {
  if (bytes.size() != kNonceSize) {
    return absl::InvalidArgumentError(absl::StrFormat("nonce of %u bytes, want %u", bytes.size(), kNonceSize));
  }
  Nonce n;
  std::memcpy(n.data(), bytes.data(), n.size());
  return n;
}

std::string Prove(const SessionKey& key, ProofPurpose purpose, const Nonce& nonce, SessionId id,
                  std::string_view client_address) {
  const std::string text = ProofText(purpose, nonce, id, client_address);
  const std::array<uint8_t, 32> mac = Hmac(key.bytes().data(), key.bytes().size(),
                                           reinterpret_cast<const uint8_t*>(text.data()), text.size());
  return std::string(mac.begin(), mac.end());
}

bool VerifyProof(const SessionKey& key, ProofPurpose purpose, const Nonce& nonce, SessionId id,
                 std::string_view client_address, std::string_view proof) {
  const std::string want = Prove(key, purpose, nonce, id, client_address);
  return proof.size() == want.size() &&
         ConstantTimeEquals(reinterpret_cast<const uint8_t*>(want.data()),
                            reinterpret_cast<const uint8_t*>(proof.data()), want.size());
}

absl::StatusOr<FrameChannel> FrameChannel::Create(const SessionKey& key, const Nonce& attach_nonce, SessionId id,
                                                  Side side) {
  absl::StatusOr<KeyBytes> c2a = DeriveKey(key, attach_nonce, kClientToAgent, id);
  if (!c2a.ok()) return c2a.status();
  absl::StatusOr<KeyBytes> a2c = DeriveKey(key, attach_nonce, kAgentToClient, id);
  if (!a2c.ok()) return a2c.status();
  FrameChannel c;
  c.id_ = id;
  c.send_key_ = side == Side::kClient ? *c2a : *a2c;
  c.receive_key_ = side == Side::kClient ? *a2c : *c2a;
  return c;
}

std::string FrameChannel::Seal(FrameType type, uint64_t arg0, uint64_t arg1, std::string_view payload) {
  Frame f;
  f.type = type;
  f.session_id = id_;
  f.counter = ++sent_;
  f.arg0 = arg0;
  f.arg1 = arg1;
  std::array<uint8_t, kFrameSize> header = EncodeFrame(f);
  std::string bytes(kFrameSize + payload.size(), '\0');
  std::memcpy(bytes.data(), header.data(), kFrameHeaderSize);
  std::memcpy(bytes.data() + kFrameHeaderSize, payload.data(), payload.size());
  const size_t mac_at = kFrameHeaderSize + payload.size();
  const std::array<uint8_t, 32> mac =
      Hmac(send_key_.data(), send_key_.size(), reinterpret_cast<const uint8_t*>(bytes.data()), mac_at);
  std::memcpy(bytes.data() + mac_at, mac.data(), kFrameMacSize);
  return bytes;
}

FrameChannel::Verdict FrameChannel::Check(absl::Span<const uint8_t> bytes, const Frame& frame) {
  if (bytes.size() < kFrameSize || bytes.size() - kFrameSize != frame.payload.size()) return Verdict::kBadMac;
  const size_t mac_at = bytes.size() - kFrameMacSize;
  const std::array<uint8_t, 32> mac = Hmac(receive_key_.data(), receive_key_.size(), bytes.data(), mac_at);
  if (!ConstantTimeEquals(mac.data(), bytes.data() + mac_at, kFrameMacSize)) return Verdict::kBadMac;
  if (frame.counter <= received_) return Verdict::kReplay;
  received_ = frame.counter;
  return Verdict::kOk;
}

const char* VerdictName(FrameChannel::Verdict verdict) {
  switch (verdict) {
    case FrameChannel::Verdict::kOk: return "ok";
    case FrameChannel::Verdict::kBadMac: return "bad_mac";
    case FrameChannel::Verdict::kReplay: return "replay";
  }
  return "unknown";
}

}  // namespace rpci::session
