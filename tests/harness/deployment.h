#ifndef RPCI_TESTS_HARNESS_DEPLOYMENT_H_
#define RPCI_TESTS_HARNESS_DEPLOYMENT_H_

// What the end-to-end tests (tests/e2e, tests/vm) share to run rpci's
// daemons as real processes: one scratch directory and the daemons'
// command lines in local mode. Where each process runs (a network
// namespace, the test machine) stays the test's choice.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tests/harness/subprocess.h"

namespace rpci::testing {

// The absolute path of a runfile ("controller/rpci-controller"), valid from
// any working directory or mount namespace.
std::string Runfile(const std::string& path);

// The daemons' files under one scratch directory: controller/ (the local
// store), agent/ (session checkpoint), kubelet/ (the kubelet's sockets),
// plugin-state/, container/, cdi/, and logs/ (each process's stdout and
// stderr as <name>.out and <name>.err).
class DeploymentDir {
 public:
  DeploymentDir() = default;
  explicit DeploymentDir(std::string root) : root_(std::move(root)) {}

  // Creates the root and its folders.
  absl::Status Create() const;

  const std::string& root() const { return root_; }
  std::string kubelet_dir() const { return root_ + "/kubelet"; }
  std::string pod_resources_socket() const { return root_ + "/kubelet/pod-resources.sock"; }

  // Starts `argv` (already wrapped for the host it runs in) with its output
  // in logs/.
  std::unique_ptr<Subprocess> Start(const std::string& name, const std::vector<std::string>& argv) const;

  // rpci-controller on the local store in controller/, gRPC on `listen`,
  // HTTP on `http_listen`, reconciling every 100 ms, 2 spares a node.
  std::vector<std::string> LocalController(const std::string& listen, const std::string& http_listen,
                                           const std::string& log_level) const;
  // rpci-plugin of node `node` for `pools` (comma-separated), talking to
  // `controller` and to the kubelet in kubelet/; CDI specs, state and
  // container files here; usage reported every second; no health server.
  std::vector<std::string> Plugin(const std::string& node, const std::string& controller, const std::string& pools,
                                  const std::string& log_level) const;
  // The fake kubelet binary admitting pod `pod` ("ns/name") that asks for
  // one `resource` and running `workload` as its container (own mount
  // namespace); it gives up after `wait_seconds`.
  std::vector<std::string> Kubelet(const std::string& pod, const std::string& resource, int wait_seconds,
                                   const std::vector<std::string>& workload) const;
  // Whether the fake kubelet's socket appeared within `timeout`.
  bool WaitForKubelet(absl::Duration timeout) const;

  // The stderr of each of `names` (every log file when empty), each under a
  // "--- name:" line.
  std::string Logs(const std::vector<std::string>& names = {}) const;

 private:
  std::string root_;
};

}  // namespace rpci::testing

#endif  // RPCI_TESTS_HARNESS_DEPLOYMENT_H_
