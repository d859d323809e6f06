#include "session/session_key.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace rpci::session {
namespace {

absl::Status FillRandom(uint8_t* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(out + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrFormat("getrandom: %s", std::strerror(errno)));
    }
    got += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool ConstantTimeEquals(const uint8_t* a, const uint8_t* b, size_t n) {
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < n; ++i) diff = diff | (a[i] ^ b[i]);
  return diff == 0;
}

absl::StatusOr<SessionKey> SessionKey::Generate() {
  KeyBytes bytes;
  if (absl::Status s = FillRandom(bytes.data(), bytes.size()); !s.ok()) return s;
  return SessionKey(bytes);
}

absl::StatusOr<SessionKey> SessionKey::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kSessionKeySize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("session key: %u hex digits, want %u", hex.size(), 2 * kSessionKeySize));
  }
  KeyBytes bytes;
  for (size_t i = 0; i < kSessionKeySize; ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("session key: not hexadecimal");
    bytes[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return SessionKey(bytes);
}

absl::StatusOr<SessionKey> SessionKey::FromBytes(std::string_view raw) {
  if (raw.size() != kSessionKeySize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("session key: %u bytes, want %u", raw.size(), kSessionKeySize));
  }
  KeyBytes bytes;
  std::memcpy(bytes.data(), raw.data(), kSessionKeySize);
  return SessionKey(bytes);
}

std::string SessionKey::Hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * kSessionKeySize);
  for (uint8_t b : bytes_) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

bool SessionKey::Matches(const KeyBytes& other) const {
  return ConstantTimeEquals(bytes_.data(), other.data(), kSessionKeySize);
}

absl::StatusOr<uint64_t> RandomU64() {
  uint64_t v = 0;
  while (v == 0) {
    if (absl::Status s = FillRandom(reinterpret_cast<uint8_t*>(&v), sizeof(v)); !s.ok()) return s;
  }
  return v;
}

}  // namespace rpci::session
