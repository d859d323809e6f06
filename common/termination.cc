#include "common/termination.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace rpci {
namespace {

std::atomic<bool> terminated{false};

void OnTerminate(int) { terminated.store(true); }

}  // namespace

void InstallTerminationHandler() {
  struct sigaction action = {};
  action.sa_handler = OnTerminate;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool TerminationRequested() { return terminated.load(); }

void WaitForTermination() {
  InstallTerminationHandler();
  while (!terminated.load()) usleep(50 * 1000);
}

}  // namespace rpci
