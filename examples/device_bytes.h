#ifndef RPCI_EXAMPLES_DEVICE_BYTES_H_
#define RPCI_EXAMPLES_DEVICE_BYTES_H_

// Fields of device-visible structures (job descriptors, NVMe queue entries)
// at byte offsets. Both devices lay them out little-endian, which is the
// host's own order on the x86-64 and arm64 hosts the examples run on.

#include <cstdint>
#include <cstring>

namespace rpci::examples {

inline void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint32_t Get32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace rpci::examples

#endif  // RPCI_EXAMPLES_DEVICE_BYTES_H_
