#ifndef RPCI_AGENT_APP_REAL_DEVICE_BACKENDS_H_
#define RPCI_AGENT_APP_REAL_DEVICE_BACKENDS_H_

#include "agent/app/agent_app.h"

namespace rpci::agent {

// The real backends for AgentApp: rpci-emu devices and, when the operator
// opted in (AgentOptions::vfio), real functions through VFIO
// (agent/vfio/vfio_backend.h).
DeviceBackends RealDeviceBackends();

}  // namespace rpci::agent

#endif  // RPCI_AGENT_APP_REAL_DEVICE_BACKENDS_H_
