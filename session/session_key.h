#ifndef RPCI_SESSION_SESSION_KEY_H_
#define RPCI_SESSION_SESSION_KEY_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rpci::session {

inline constexpr size_t kSessionKeySize = 32;
using KeyBytes = std::array<uint8_t, kSessionKeySize>;

// A session's secret: 32 random bytes from the kernel CSPRNG. Compared in
// constant time; printed only as hex where it must travel (env, checkpoint).
class SessionKey {
 public:
  SessionKey() = default;
  explicit SessionKey(const KeyBytes& bytes) : bytes_(bytes) {}

  // Fresh key from getrandom(2). Fails only if the kernel cannot supply entropy.
  static absl::StatusOr<SessionKey> Generate();
  // Exactly 64 hex digits (either case); anything else is INVALID_ARGUMENT.
  static absl::StatusOr<SessionKey> FromHex(std::string_view hex);
  // Exactly 32 bytes.
  static absl::StatusOr<SessionKey> FromBytes(std::string_view bytes);

  std::string Hex() const;
  std::string Bytes() const { return std::string(bytes_.begin(), bytes_.end()); }
  const KeyBytes& bytes() const { return bytes_; }

  // Constant-time: the time taken does not depend on where the keys differ.
  bool Matches(const KeyBytes& other) const;
  bool Matches(const SessionKey& other) const { return Matches(other.bytes_); }

 private:
  KeyBytes bytes_{};
};

// Constant-time equality of two equal-length byte strings; false (without
// early exit on content) when lengths differ.
bool ConstantTimeEquals(const uint8_t* a, const uint8_t* b, size_t n);

// A random nonzero 64-bit value from the CSPRNG (memory keys; session ids
// are SessionId::Random).
absl::StatusOr<uint64_t> RandomU64();

}  // namespace rpci::session

#endif  // RPCI_SESSION_SESSION_KEY_H_
