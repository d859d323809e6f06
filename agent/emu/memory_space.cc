#include "agent/emu/memory_space.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_format.h"

namespace rpci::agent {
namespace {

constexpr size_t kPage = 4096;

absl::Status OutOfRange(uint64_t addr, uint64_t len, size_t size) {
  return absl::OutOfRangeError(
      absl::StrFormat("memory space: [0x%x, +0x%x) outside its 0x%x bytes", addr, len, size));
}

}  // namespace

MemorySpace::MemorySpace(size_t size) : size_(size) {
  const size_t rounded = ((size + kPage - 1) / kPage) * kPage;
  data_ = static_cast<uint8_t*>(std::aligned_alloc(kPage, rounded == 0 ? kPage : rounded));
  std::memset(data_, 0, rounded == 0 ? kPage : rounded);
}

MemorySpace::~MemorySpace() { std::free(data_); }

absl::Status MemorySpace::Read(uint64_t addr, void* out, uint64_t len) const {
  if (!Contains(addr, len)) return OutOfRange(addr, len, size_);
  if (len > 0) std::memcpy(out, data_ + addr, len);
  return absl::OkStatus();
}

absl::Status MemorySpace::Write(uint64_t addr, const void* in, uint64_t len) {
  if (!Contains(addr, len)) return OutOfRange(addr, len, size_);
  if (len > 0) std::memcpy(data_ + addr, in, len);
  return absl::OkStatus();
}

// x86-64 and aarch64 Linux are little-endian, the byte order of PCIe
// registers, so plain copies suffice.
uint32_t MemorySpace::Load32(uint64_t addr) const {
  uint32_t v;
  std::memcpy(&v, data_ + addr, sizeof(v));
  return v;
}

uint64_t MemorySpace::Load64(uint64_t addr) const {
  uint64_t v;
  std::memcpy(&v, data_ + addr, sizeof(v));
  return v;
}

void MemorySpace::Store32(uint64_t addr, uint32_t value) { std::memcpy(data_ + addr, &value, sizeof(value)); }

void MemorySpace::Store64(uint64_t addr, uint64_t value) { std::memcpy(data_ + addr, &value, sizeof(value)); }

}  // namespace rpci::agent
