#ifndef RPCI_TESTS_HARNESS_SUBPROCESS_H_
#define RPCI_TESTS_HARNESS_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace rpci::testing {

// A child process running in the background (for helpers that must outlive
// one call, e.g. an agent under `ip netns exec`), stdout and stderr going to
// files. Killed (SIGKILL) if still running when destroyed.
class Subprocess {
 public:
  // Starts `argv` (found on PATH) with this process's environment plus `env`.
  Subprocess(const std::vector<std::string>& argv, const std::string& stdout_path, const std::string& stderr_path,
             const std::map<std::string, std::string>& env = {});
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  void Signal(int sig);
  // The exit code (128 + signal when killed), or -1 while still running
  // after `timeout`.
  int Wait(absl::Duration timeout);
  std::string out() const;
  std::string err() const;

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = -1;
  std::string out_, err_;
};

// Whole contents of a file ("" when unreadable).
std::string ReadWholeFile(const std::string& path);

}  // namespace rpci::testing

#endif  // RPCI_TESTS_HARNESS_SUBPROCESS_H_
