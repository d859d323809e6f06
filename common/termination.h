#ifndef RPCI_COMMON_TERMINATION_H_
#define RPCI_COMMON_TERMINATION_H_

namespace rpci {

// SIGINT/SIGTERM handling for daemons: the first call installs handlers that
// only set a flag (async-signal-safe); the daemon polls or waits for it and
// then shuts down in order.
void InstallTerminationHandler();

// True once SIGINT or SIGTERM arrived. REQUIRES: InstallTerminationHandler().
bool TerminationRequested();

// Installs the handler and blocks until SIGINT or SIGTERM.
void WaitForTermination();

}  // namespace rpci

#endif  // RPCI_COMMON_TERMINATION_H_
