#include "session/frame_auth.h"

#include <openssl/crypto.h>
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

// HMAC-SHA256 (RFC 2104) under one key, its padded key hashed once: a
// frame's MAC then costs two short hashes. OpenSSL's one-shot HMAC() looks up
// the digest and hashes the pads on every call: 3.8 us against 0.4 us for a
// kick's 72 MAC'd bytes, four times per doorbell (docs/benchmarks.md).
class FrameChannel::MacKey {
 public:
  static absl::StatusOr<std::shared_ptr<const MacKey>> Create(const KeyBytes& key) {
    static_assert(sizeof(KeyBytes) <= kBlock, "keys longer than a block are hashed first (RFC 2104)");
    auto k = std::shared_ptr<MacKey>(new MacKey);
    std::array<uint8_t, kBlock> ipad, opad;
    ipad.fill(0x36);
    opad.fill(0x5c);
    for (size_t i = 0; i < key.size(); ++i) {
      ipad[i] ^= key[i];
      opad[i] ^= key[i];
    }
    const bool ok = k->inner_ != nullptr && k->outer_ != nullptr &&
                    EVP_DigestInit_ex(k->inner_, EVP_sha256(), nullptr) > 0 &&
                    EVP_DigestUpdate(k->inner_, ipad.data(), ipad.size()) > 0 &&
                    EVP_DigestInit_ex(k->outer_, EVP_sha256(), nullptr) > 0 &&
                    EVP_DigestUpdate(k->outer_, opad.data(), opad.size()) > 0;
    OPENSSL_cleanse(ipad.data(), ipad.size());
    OPENSSL_cleanse(opad.data(), opad.size());
    if (!ok) return absl::InternalError("session frames: SHA-256 unavailable in OpenSSL");
    return std::shared_ptr<const MacKey>(std::move(k));
  }
  ~MacKey() {
    EVP_MD_CTX_free(inner_);
    EVP_MD_CTX_free(outer_);
  }
  MacKey(const MacKey&) = delete;
  MacKey& operator=(const MacKey&) = delete;

  // The MAC of `len` bytes at `data`; all zero if OpenSSL fails (it then
  // matches no frame's MAC but by chance of 2^-128).
  std::array<uint8_t, 32> Mac(const uint8_t* data, size_t len) const {
    std::array<uint8_t, 32> inner{}, out{};
    unsigned int n = 0;
    EVP_MD_CTX* work = EVP_MD_CTX_new();
    const bool ok = work != nullptr && EVP_MD_CTX_copy_ex(work, inner_) > 0 && EVP_DigestUpdate(work, data, len) > 0 &&
                    EVP_DigestFinal_ex(work, inner.data(), &n) > 0 && EVP_MD_CTX_copy_ex(work, outer_) > 0 &&
                    EVP_DigestUpdate(work, inner.data(), inner.size()) > 0 &&
                    EVP_DigestFinal_ex(work, out.data(), &n) > 0;
    EVP_MD_CTX_free(work);
    if (!ok) out.fill(0);
    return out;
  }

 private:
  static constexpr size_t kBlock = 64;  // SHA-256's block
  MacKey() : inner_(EVP_MD_CTX_new()), outer_(EVP_MD_CTX_new()) {}
  EVP_MD_CTX* inner_;
  EVP_MD_CTX* outer_;
};

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

void WarmUpCrypto() {
  const SessionKey key;  // all zero: nothing is proved or sealed with it
  const Nonce nonce{};
  (void)Prove(key, ProofPurpose::kAttach, nonce, SessionId(1), "");
  (void)FrameChannel::Create(key, nonce, SessionId(1), FrameChannel::Side::kClient);
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
  absl::StatusOr<std::shared_ptr<const MacKey>> send = MacKey::Create(side == Side::kClient ? *c2a : *a2c);
  if (!send.ok()) return send.status();
  absl::StatusOr<std::shared_ptr<const MacKey>> receive = MacKey::Create(side == Side::kClient ? *a2c : *c2a);
  if (!receive.ok()) return receive.status();
  FrameChannel c;
  c.id_ = id;
  c.send_key_ = *std::move(send);
  c.receive_key_ = *std::move(receive);
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
  const std::array<uint8_t, 32> mac = send_key_->Mac(reinterpret_cast<const uint8_t*>(bytes.data()), mac_at);
  std::memcpy(bytes.data() + mac_at, mac.data(), kFrameMacSize);
  return bytes;
}

FrameChannel::Verdict FrameChannel::Check(absl::Span<const uint8_t> bytes, const Frame& frame) {
  if (bytes.size() < kFrameSize || bytes.size() - kFrameSize != frame.payload.size()) return Verdict::kBadMac;
  const size_t mac_at = bytes.size() - kFrameMacSize;
  const std::array<uint8_t, 32> mac = receive_key_->Mac(bytes.data(), mac_at);
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
