#ifndef RPCI_TESTS_KUBELET_CONTAINER_H_
#define RPCI_TESTS_KUBELET_CONTAINER_H_

// What a container runtime does with a ContainerAllocateResponse, reduced to
// what rpci's workloads can observe: the command runs with exactly the
// response's environment (nothing inherited) and, in its own mount namespace,
// with each of the response's mounts bind-mounted (read-only when asked) at
// its container path, and a /dev holding only a runtime's default nodes and
// the response's devices. Device permissions (a device cgroup) and
// annotations are not applied.

#include <string>
#include <vector>

#include "third_party/kubelet/deviceplugin/v1beta1/api.pb.h"

namespace rpci::testing {

// Who a container's process is, as a pod's securityContext says
// (runAsUser, runAsGroup, supplementalGroups). uid -1: this process's user.
struct ContainerUser {
  int uid = -1;
  int gid = -1;
  std::vector<int> supplemental_groups;
};

// In this process: enters a new mount namespace (private propagation), binds
// the mounts (creating missing mount points), becomes `user` (when set),
// replaces the environment with the response's and execs argv[0] (a path).
// Returns only on failure, with the reason in `error`. Needs CAP_SYS_ADMIN
// when there are mounts, CAP_SETUID/CAP_SETGID for a user.
void ExecContainer(const v1beta1::ContainerAllocateResponse& response, const std::vector<std::string>& argv,
                   std::string* error, const ContainerUser& user = {});

// Forks, runs the container as above in the child and waits. With
// `isolate` false the child only gets the response's envs on top of this
// process's environment (no mounts: for unprivileged runs where the plugin's
// container dir is its state dir). Exit code, 128 + signal when killed, 127
// when the container could not be started (reason on stderr).
int RunContainer(const v1beta1::ContainerAllocateResponse& response, const std::vector<std::string>& argv,
                 bool isolate);

}  // namespace rpci::testing

#endif  // RPCI_TESTS_KUBELET_CONTAINER_H_
