#ifndef RPCI_AGENT_VFIO_TESTING_GUEST_UTIL_H_
#define RPCI_AGENT_VFIO_TESTING_GUEST_UTIL_H_

// Helpers for tests that run inside the test machine (tests/vm).

#include <poll.h>
#include <sys/mman.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/time/clock.h"
#include "agent/vfio/vfio_device.h"

namespace rpci::agent::vfio::guest {

inline std::string ReadLine(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  return s;
}

// The first PCI function with this vendor:device ("0x1234"), or "".
inline std::string FindFunction(const std::string& vendor, const std::string& device) {
  for (const auto& e : std::filesystem::directory_iterator("/sys/bus/pci/devices")) {
    if (ReadLine(e.path() / "vendor") == vendor && ReadLine(e.path() / "device") == device) return e.path().filename();
  }
  return "";
}

inline VfioOptions Options(const std::string& bdf) {
  VfioOptions o;
  o.bind.bdf = bdf;
  return o;
}

// Page-aligned, zeroed memory for a DMA window.
struct DmaMemory {
  explicit DmaMemory(size_t n) : size(n) {
    base = static_cast<uint8_t*>(mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
  }
  ~DmaMemory() { munmap(base, size); }
  uint8_t* base;
  size_t size;
};

inline bool WaitFd(int fd, int ms) {
  pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

template <typename F>
bool WaitUntil(F done, absl::Duration timeout = absl::Seconds(10)) {
  absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return false;
}

}  // namespace rpci::agent::vfio::guest

#endif  // RPCI_AGENT_VFIO_TESTING_GUEST_UTIL_H_
