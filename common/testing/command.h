#ifndef RPCI_COMMON_TESTING_COMMAND_H_
#define RPCI_COMMON_TESTING_COMMAND_H_

#include <string>

namespace rpci::testing {

// What a shell command printed on stdout (add "2>&1" to the command for
// stderr too) and how it ended.
struct CommandResult {
  // The exit status; -1 when the shell could not start or the command was
  // killed by a signal.
  int exit_code = -1;
  std::string output;
};

// Runs `command` with /bin/sh (popen) and waits for it.
CommandResult RunCommand(const std::string& command);

}  // namespace rpci::testing

#endif  // RPCI_COMMON_TESTING_COMMAND_H_
