#ifndef RPCI_AGENT_INVENTORY_INVENTORY_COMMAND_H_
#define RPCI_AGENT_INVENTORY_INVENTORY_COMMAND_H_

#include <ostream>
#include <string>
#include <vector>

namespace rpci::agent {

// `rpci-agent inventory [flags]`: scans PCIe functions (and RDMA NICs, and
// with --policy the devices it would export), prints them and exits.
// `args` are the arguments after the subcommand. Returns the exit status:
// 0 done (or --help), 1 the scan or policy failed, 2 bad flags.
int RunInventoryCommand(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_INVENTORY_INVENTORY_COMMAND_H_
