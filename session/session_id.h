#ifndef RPCI_SESSION_SESSION_ID_H_
#define RPCI_SESSION_SESSION_ID_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rpci::session {

// Names one memory-mirroring session: a random nonzero 64-bit value, written
// as exactly 16 lower-case hex digits wherever it travels as text (gRPC, env,
// CRDs, logs) and as a little-endian u64 on the session wire. Parsed once at
// the edge; a default-constructed id is "no session".
class SessionId {
 public:
  constexpr SessionId() = default;
  // The id on the wire; 0 is "no session".
  constexpr explicit SessionId(uint64_t value) : value_(value) {}

  // Exactly 16 hex digits (either case), not all zero; INVALID_ARGUMENT
  // naming the text otherwise.
  static absl::StatusOr<SessionId> Parse(std::string_view text);
  // Like Parse, but "" is the empty id (a field that says "no session yet").
  static absl::StatusOr<SessionId> ParseOptional(std::string_view text);
  // A fresh id from the kernel CSPRNG.
  static absl::StatusOr<SessionId> Random();

  uint64_t value() const { return value_; }
  bool empty() const { return value_ == 0; }
  // 16 lower-case hex digits; "" for the empty id.
  std::string ToString() const;

  friend bool operator==(SessionId a, SessionId b) { return a.value_ == b.value_; }
  friend bool operator!=(SessionId a, SessionId b) { return a.value_ != b.value_; }
  friend bool operator<(SessionId a, SessionId b) { return a.value_ < b.value_; }

 private:
  uint64_t value_ = 0;
};

}  // namespace rpci::session

#endif  // RPCI_SESSION_SESSION_ID_H_
