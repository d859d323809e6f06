#ifndef RPCI_KUBECTL_RPCI_KUBECTL_RPCI_H_
#define RPCI_KUBECTL_RPCI_KUBECTL_RPCI_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/kube/client.h"
#include "nlohmann/json.hpp"

namespace rpci::kubectl {

// What the plugin reads from its process environment, passed in so tests
// can point it elsewhere.
struct CliEnv {
  std::string kubeconfig_env;  // $KUBECONFIG (a ':'-separated list)
  std::string home;            // $HOME
  absl::Duration poll_interval = absl::Milliseconds(500);  // drain progress
};

// The kubeconfig to use: `flag_value` when set, else the first existing file
// of $KUBECONFIG, else ~/.kube/config. NOT_FOUND naming what was tried.
absl::StatusOr<std::string> ResolveKubeconfigPath(const std::string& flag_value, const CliEnv& env);

// Left-aligned columns separated by three spaces, as kubectl prints them;
// the first row is the header.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// "45s", "12m", "5h", "3d", "2y" between an RFC 3339 time and `now`;
// "<unknown>" when the time is missing or unparsable.
std::string Age(const std::string& rfc3339, absl::Time now);

// The tables and the description, from API objects (lists' `items`).
// DevicesTable leaves the POD column out when `attachments` is null (the
// viewer may not list them).
std::string DevicesTable(const nlohmann::json& devices, const nlohmann::json& attachments, absl::Time now);
std::string PoolsTable(const nlohmann::json& pools, const nlohmann::json& devices, absl::Time now);
// Only attachments of pods in `pod_namespace` when it is not empty.
std::string AttachmentsTable(const nlohmann::json& attachments, absl::Time now, const std::string& pod_namespace = "");
std::string DescribeDevice(const nlohmann::json& device, const nlohmann::json& attachments,
                           const nlohmann::json& events, absl::Time now);

// Sets the drain annotation on PcieDevice `name` (or removes it when
// `drain` is false). NOT_FOUND naming the device when it does not exist.
absl::Status SetDrain(kube::KubeClient& client, const std::string& name, bool drain);

// Whether the controller reports `device` drained: phase Draining (or
// Unhealthy), no attachment and no assigned node.
bool IsDrained(const nlohmann::json& device);

// Waits until the device is drained, printing a line to `out` whenever what
// it waits for changes. DEADLINE_EXCEEDED naming what still holds it.
absl::Status WaitDrained(kube::KubeClient& client, const std::string& name, absl::Duration timeout,
                         absl::Duration poll, std::ostream& out);

// `kubectl rpci <args...>` (args without the program name). Returns the exit
// status: 0 done, 1 failed (message on `err`), 2 usage error.
int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err, const CliEnv& env);

}  // namespace rpci::kubectl

#endif  // RPCI_KUBECTL_RPCI_KUBECTL_RPCI_H_
