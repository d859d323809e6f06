#ifndef RPCI_AGENT_EMU_MEMORY_SPACE_H_
#define RPCI_AGENT_EMU_MEMORY_SPACE_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace rpci::agent {

// A block of plain, zeroed, page-aligned memory that a device model works on:
// a BAR register file or a DMA space. Page alignment lets a session register
// it with the fabric and mirror it. Addresses are byte offsets from the start.
// Not thread-safe; the owner serializes access.
class MemorySpace {
 public:
  explicit MemorySpace(size_t size);
  ~MemorySpace();
  MemorySpace(const MemorySpace&) = delete;
  MemorySpace& operator=(const MemorySpace&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

  // Whether [addr, addr + len) lies inside, without overflow. len 0 is
  // contained when addr <= size.
  bool Contains(uint64_t addr, uint64_t len) const { return addr <= size_ && len <= size_ - addr; }

  // Bounds-checked copies; OUT_OF_RANGE naming the range otherwise.
  absl::Status Read(uint64_t addr, void* out, uint64_t len) const;
  absl::Status Write(uint64_t addr, const void* in, uint64_t len);

  // Little-endian loads and stores. REQUIRES: Contains(addr, width).
  uint32_t Load32(uint64_t addr) const;
  uint64_t Load64(uint64_t addr) const;
  void Store32(uint64_t addr, uint32_t value);
  void Store64(uint64_t addr, uint64_t value);

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

using BarSpace = MemorySpace;
using DmaSpace = MemorySpace;

}  // namespace rpci::agent

#endif  // RPCI_AGENT_EMU_MEMORY_SPACE_H_
