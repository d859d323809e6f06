#include "librpci/dma_allocator.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace rpci::lib {

DmaAllocator::DmaAllocator(uint64_t size) : capacity_(size), free_bytes_(size) {
  if (size > 0) free_[0] = size;
}

uint64_t DmaAllocator::largest_free() const {
  uint64_t best = 0;
  for (const auto& [off, len] : free_) best = std::max(best, len);
  return best;
}

absl::StatusOr<uint64_t> DmaAllocator::Allocate(uint64_t size, uint64_t align) {
  if (size == 0) return absl::InvalidArgumentError("dma: allocation of 0 bytes");
  if (align == 0 || (align & (align - 1)) != 0 || align > capacity_) {
    return absl::InvalidArgumentError(absl::StrFormat("dma: alignment %u is not a power of two within the space", align));
  }
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    const uint64_t start = it->first, len = it->second;
    const uint64_t aligned = (start + align - 1) & ~(align - 1);
    if (aligned < start) continue;  // wrapped
    const uint64_t pad = aligned - start;
    if (pad > len || size > len - pad) continue;
    const uint64_t rest = len - pad - size;
    free_.erase(it);
    if (pad > 0) free_[start] = pad;
    if (rest > 0) free_[aligned + size] = rest;
    used_[aligned] = size;
    free_bytes_ -= size;
    return aligned;
  }
  return absl::ResourceExhaustedError(
      absl::StrFormat("dma: no free range of %u bytes aligned to %u (%u of %u bytes free, largest free range %u)",
                      size, align, free_bytes_, capacity_, largest_free()));
}

absl::Status DmaAllocator::Free(uint64_t offset) {
  auto it = used_.find(offset);
  if (it == used_.end()) {
    return absl::NotFoundError(absl::StrFormat("dma: 0x%x is not a live allocation (double free?)", offset));
  }
  uint64_t start = offset, len = it->second;
  used_.erase(it);
  free_bytes_ += len;
  // Merge with the free neighbours on both sides.
  auto next = free_.lower_bound(start);
  if (next != free_.end() && next->first == start + len) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      len += prev->second;
      free_.erase(prev);
    }
  }
  free_[start] = len;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> DmaAllocator::SizeOf(uint64_t offset) const {
  auto it = used_.find(offset);
  if (it == used_.end()) return absl::NotFoundError(absl::StrFormat("dma: 0x%x is not a live allocation", offset));
  return it->second;
}

}  // namespace rpci::lib
