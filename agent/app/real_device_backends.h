#ifndef RPCI_AGENT_APP_REAL_DEVICE_BACKENDS_H_
#define RPCI_AGENT_APP_REAL_DEVICE_BACKENDS_H_

#include "agent/app/agent_app.h"

namespace rpci::agent {

// The real backends for AgentApp, each a SessionDevice: rpci-emu devices and,
// when the operator opted in (AgentOptions::sysfs_bar), sysfs-bar on real
// functions.
DeviceBackends RealDeviceBackends(bool allow_sysfs_bar);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_APP_REAL_DEVICE_BACKENDS_H_
