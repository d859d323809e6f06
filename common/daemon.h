#ifndef RPCI_COMMON_DAEMON_H_
#define RPCI_COMMON_DAEMON_H_

// A daemon's life after its flags, the same for the agent, the controller
// and the plugin: exit codes for parts that cannot be made, and serving until
// SIGINT/SIGTERM.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/termination.h"

namespace rpci {

// --node, the node a process speaks for. Its default is $NODE_NAME (set from
// the downward API's spec.nodeName in the chart) when set and not empty,
// else `*node` as the caller left it.
void AddNodeFlag(FlagSet& flags, std::string* node, const std::string& help);

// --log-level, the same in every daemon: "debug, info, warn or error".
void AddLogLevelFlag(FlagSet& flags, std::string* level);

// Sets the minimum log level to the --log-level given; on an unknown name
// says so on stderr ("--log-level: ...") and returns the exit code 2.
std::optional<int> ApplyLogLevelFlag(const std::string& level);

// The exit code of a daemon that cannot make its parts from its options,
// logged "cannot start": 2 for invalid options (as for a bad flag), 1
// otherwise.
int CannotStart(const Logger& log, const absl::Status& s);

// Starts `app`, serves until SIGINT or SIGTERM, then stops it. The exit
// code: 0, or 1 when Start fails (logged "cannot serve"; Stop is not called).
template <typename App>
int ServeUntilTerminated(App& app, const Logger& log) {
  InstallTerminationHandler();
  if (absl::Status s = app.Start(); !s.ok()) {
    log.Error("cannot serve", {{"error", s.ToString()}});
    return 1;
  }
  WaitForTermination();
  log.Info("signal received; shutting down");
  app.Stop();
  return 0;
}

}  // namespace rpci

#endif  // RPCI_COMMON_DAEMON_H_
