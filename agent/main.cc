// rpci-agent: the device-server agent. Each subcommand is a library entry
// point taking the arguments after its name; main only dispatches.
#include <iostream>
#include <string>
#include <vector>

#include "agent/app/real_device_backends.h"
#include "agent/app/serve_command.h"
#include "agent/inventory/inventory_command.h"

namespace {

struct Subcommand {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

int Inventory(const std::vector<std::string>& args) {
  return rpci::agent::RunInventoryCommand(args, std::cout, std::cerr);
}

int Serve(const std::vector<std::string>& args) {
  // vfio is used only when the operator opted in (inventory.vfio).
  return rpci::agent::RunServe(args, rpci::agent::RealDeviceBackends());
}

// Add subcommands here.
const Subcommand kSubcommands[] = {
    {"inventory", "print this host's PCIe functions, RDMA NICs or exported devices and exit",
     Inventory},
    {"serve", "run the agent daemon: export devices to the controller and serve sessions (docs/agent.md)",
     Serve},
};

void PrintUsage(std::ostream& out) {
  out << "usage: rpci-agent <subcommand> [flags]\n\n"
         "rpci's device-server agent: inventories local PCIe devices and exports them over "
         "the fabric.\n\nsubcommands:\n";
  for (const Subcommand& s : kSubcommands) out << "  " << s.name << "\n      " << s.summary << "\n";
  out << "\n`rpci-agent <subcommand> --help` describes its flags.\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    PrintUsage(std::cerr);
    return 2;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    PrintUsage(std::cout);
    return 0;
  }
  for (const Subcommand& s : kSubcommands) {
    if (args[0] == s.name) return s.run(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  std::cerr << "rpci-agent: unknown subcommand \"" << args[0] << "\" (see rpci-agent --help)\n";
  return 2;
}
