#ifndef RPCI_AGENT_APP_SERVE_COMMAND_H_
#define RPCI_AGENT_APP_SERVE_COMMAND_H_

#include <string>
#include <vector>

#include "agent/app/agent_app.h"

namespace rpci::agent {

// `rpci-agent serve [flags]`: reads --config and the flags into AgentOptions,
// runs an AgentApp with `backends` until SIGTERM/SIGINT, then stops it
// (sessions stay checkpointed). `args` excludes the program name and the
// subcommand. Returns the exit status: 0 done (or --help), 2 bad flags or
// config, 1 failure to start.
int RunServe(const std::vector<std::string>& args, DeviceBackends backends);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_APP_SERVE_COMMAND_H_
