#ifndef RPCI_EXAMPLES_DEVICE_FLAG_H_
#define RPCI_EXAMPLES_DEVICE_FLAG_H_

#include <cstdint>

#include "common/flags.h"

namespace rpci::examples {

// --device=N, every example's: which of the container's RPCI_* devices
// (docs/librpci.md) lib::Device::OpenFromEnv opens.
inline void AddDeviceFlag(FlagSet& flags, int64_t* index) {
  flags.Int("device", index, "index of the RPCI_* device to open (0: the first)");
}

}  // namespace rpci::examples

#endif  // RPCI_EXAMPLES_DEVICE_FLAG_H_
