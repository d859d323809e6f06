#ifndef RPCI_LIBRPCI_DMA_ALLOCATOR_H_
#define RPCI_LIBRPCI_DMA_ALLOCATOR_H_

// Hands out ranges of a session's DMA space (device addresses are offsets
// into it). First fit over an address-ordered free list; freed ranges merge
// with their neighbours, so fragmentation is only what live buffers cause.
// Not thread-safe (rpci::Device serializes calls).

#include <cstdint>
#include <map>

#include "absl/status/statusor.h"

namespace rpci::lib {

class DmaAllocator {
 public:
  // Manages [0, size).
  explicit DmaAllocator(uint64_t size);

  // An offset aligned to `align` (a power of two, at least 1) with `size`
  // bytes free after it. INVALID_ARGUMENT for size 0 or a bad alignment;
  // RESOURCE_EXHAUSTED when no free range fits (the message says how much is
  // free and the largest free range).
  absl::StatusOr<uint64_t> Allocate(uint64_t size, uint64_t align);

  // Returns a range given by Allocate. NOT_FOUND for an offset that is not
  // the start of a live allocation (never allocated, or already freed).
  absl::Status Free(uint64_t offset);

  // Size of the live allocation starting at `offset`, NOT_FOUND otherwise.
  absl::StatusOr<uint64_t> SizeOf(uint64_t offset) const;

  uint64_t capacity() const { return capacity_; }
  uint64_t free_bytes() const { return free_bytes_; }
  uint64_t largest_free() const;
  size_t live() const { return used_.size(); }

 private:
  uint64_t capacity_;
  uint64_t free_bytes_;
  std::map<uint64_t, uint64_t> free_;  // offset -> length, address order
  std::map<uint64_t, uint64_t> used_;  // offset -> length
};

}  // namespace rpci::lib

#endif  // RPCI_LIBRPCI_DMA_ALLOCATOR_H_
