#include "agent/app/serve_command.h"

#include <iostream>

#include "common/daemon.h"
#include "common/flags.h"
#include "common/log.h"

namespace rpci::agent {

int RunServe(const std::vector<std::string>& args, DeviceBackends backends) {
  AgentOptions o;
  ServeFlags extra;
  FlagSet flags("rpci-agent serve [flags]",
                "Device-server agent: exports local PCIe functions and emulated rpci-emu devices to the "
                "controller and serves memory-mirroring sessions on them. Config: docs/agent.md.");
  AddServeFlags(flags, &o, &extra);
  std::vector<std::string> rest;
  if (std::optional<int> exit_code = flags.ParseOrExit(args, std::cout, std::cerr, &rest)) return *exit_code;
  if (!rest.empty()) {
    std::cerr << "rpci-agent serve: unexpected argument \"" << rest.front() << "\"\n" << flags.Help();
    return 2;
  }
  // --config (and the rest) now known
  if (!o.config_file.empty()) {
    if (absl::Status s = LoadAgentConfig(o.config_file, &o); !s.ok()) {
      std::cerr << "rpci-agent serve: " << s.message() << "\n";
      return 2;
    }
    flags.Apply();  // flags override the file
  }
  ApplyServeFlags(flags, extra, &o);
  if (absl::Status s = SetMinLogLevel(o.log_level); !s.ok()) {
    std::cerr << "rpci-agent serve: log_level: " << s.message() << "\n";
    return 2;
  }
  Logger log("agent");

  absl::StatusOr<std::unique_ptr<AgentApp>> app = AgentApp::Create(o, std::move(backends));
  if (!app.ok()) {
    std::cerr << "rpci-agent serve: " << app.status().message() << "\n";
    return CannotStart(log, app.status());
  }
  return ServeUntilTerminated(**app, log);
}

}  // namespace rpci::agent
