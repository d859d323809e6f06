#ifndef RPCI_COMMON_FABRIC_TESTING_PEER_PROTOCOL_H_
#define RPCI_COMMON_FABRIC_TESTING_PEER_PROTOCOL_H_

// The line protocol between fabric tests and fabric_peer, a process that
// serves one registered buffer from another network namespace:
//
//   peer -> test (stdout):  READY <address hex> <remote address> <key> <size>
//   test -> peer (stdin):   PEER <address hex>
//   then fabric messages:   "digest" -> "digest <fnv1a64 of the buffer, hex>"
//                           "quit"   -> "bye", and the peer exits 0.
// The buffer starts as PeerPattern(i) at byte i and grants remote read+write.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"

namespace rpci::fabric::testing {

inline uint8_t PeerPattern(size_t i) { return static_cast<uint8_t>(i * 13 + 7); }

inline std::string Digest(const uint8_t* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001b3ull;
  return absl::StrFormat("%016x", h);
}

}  // namespace rpci::fabric::testing

#endif  // RPCI_COMMON_FABRIC_TESTING_PEER_PROTOCOL_H_
