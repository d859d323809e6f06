#ifndef RPCI_AGENT_VFIO_BIND_H_
#define RPCI_AGENT_VFIO_BIND_H_

#include <string>

#include "absl/status/status.h"

namespace rpci::agent::vfio {

struct BindOptions {
  std::string sysfs_root = "/sys";
  std::string bdf;  // canonical "dddd:bb:dd.f"
  // Whether a function bound to another (host) driver may be unbound from it.
  // Off by default: the agent never takes a device from a host driver unless
  // the operator's policy says so.
  bool allow_unbind = false;
};

// Binds the function to vfio-pci through driver_override: nothing to do when
// it already is; an unbound function is probed with driver_override set. A
// function bound to another driver is FAILED_PRECONDITION naming the driver
// unless `allow_unbind`. FAILED_PRECONDITION when vfio-pci is not loaded;
// NOT_FOUND when the function does not exist.
absl::Status BindToVfioPci(const BindOptions& options);

// The driver the function is bound to, or "" when none.
std::string BoundDriver(const std::string& sysfs_root, const std::string& bdf);

}  // namespace rpci::agent::vfio

#endif  // RPCI_AGENT_VFIO_BIND_H_
