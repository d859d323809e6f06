#include "session/session_id.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace rpci::session {

absl::StatusOr<SessionId> SessionId::Parse(std::string_view text) {
  if (text.size() != 16) {
    return absl::InvalidArgumentError(absl::StrFormat("session id \"%s\": want 16 hex digits", text));
  }
  uint64_t v = 0;
  for (char c : text) {
    int d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    if (d < 0) return absl::InvalidArgumentError(absl::StrFormat("session id \"%s\": not hexadecimal", text));
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  if (v == 0) return absl::InvalidArgumentError("session id is zero");
  return SessionId(v);
}

absl::StatusOr<SessionId> SessionId::ParseOptional(std::string_view text) {
  if (text.empty()) return SessionId();
  return Parse(text);
}

absl::StatusOr<SessionId> SessionId::Random() {
  uint64_t v = 0;
  while (v == 0) {
    if (getrandom(&v, sizeof(v), 0) != static_cast<ssize_t>(sizeof(v))) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrFormat("session id: getrandom: %s", std::strerror(errno)));
    }
  }
  return SessionId(v);
}

std::string SessionId::ToString() const { return empty() ? "" : absl::StrFormat("%016x", value_); }

}  // namespace rpci::session
