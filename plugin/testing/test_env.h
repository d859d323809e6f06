#ifndef RPCI_PLUGIN_TESTING_TEST_ENV_H_
#define RPCI_PLUGIN_TESTING_TEST_ENV_H_

// What the plugin's tests run against: the real controller (pool manager on a
// local store, NodeRegistry on loopback), the fake kubelet over unix sockets
// in a temp dir, and agents reduced to their session control surface
// (TestAgents), whose reachability and session loss a test can switch.

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/testing/temp_dir.h"
#include "controller/testing/loopback_controller.h"
#include "controller/testing/registrations.h"
#include "grpcpp/grpcpp.h"
#include "plugin/controller_client.h"
#include "plugin/plugin.h"
#include "plugin/session_opener.h"
#include "tests/kubelet/fake_kubelet.h"

namespace rpci::plugin::testing {

// Agents as the plugin sees them through SessionOpener. Thread-safe.
class TestAgents final : public SessionOpener {
 public:
  absl::StatusOr<AttachedSession> Open(const rpci::v1::SessionGrant& grant, const std::string& endpoint) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_.count(endpoint)) return absl::UnavailableError("device " + grant.device_id() + ": agent " + endpoint + " unreachable");
    if (refuse_.count(grant.device_id())) {
      return absl::ResourceExhaustedError("device " + grant.device_id() + ": agent refused the session: no BAR space");
    }
    if (grant.token().empty()) return absl::PermissionDeniedError("device " + grant.device_id() + ": grant has no token");
    AttachedSession s;
    s.device_id = grant.device_id();
    s.grant_id = grant.grant_id();
    s.ticket.session_id = session::SessionId(++next_);
    s.ticket.endpoint = endpoint;
    s.ticket.fabric_provider = "tcp;ofi_rxm";
    session::KeyBytes key;
    key.fill(static_cast<uint8_t>(0xa0 + next_));
    s.ticket.key = session::SessionKey(key);
    s.ticket.bars = {{0, 4096}, {2, 65536}};
    s.ticket.dma_size = 1 << 20;
    open_[s.ticket.session_id] = s;
    ++opened_;
    return s;
  }
  absl::Status Close(const AttachedSession& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_.count(s.ticket.endpoint)) return absl::UnavailableError("agent " + s.ticket.endpoint + " unreachable");
    open_.erase(s.ticket.session_id);
    return absl::OkStatus();
  }
  absl::Status Check(const AttachedSession& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_.count(s.ticket.endpoint)) return absl::UnavailableError("agent " + s.ticket.endpoint + " unreachable");
    if (!open_.count(s.ticket.session_id) || lost_.count(s.device_id)) {
      return absl::NotFoundError("session " + s.ticket.session_id.ToString() + " gone");
    }
    return absl::OkStatus();
  }
  absl::Status ProbeAgent(const std::string& endpoint, absl::Duration) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_.count(endpoint)) return absl::UnavailableError("agent " + endpoint + " unreachable");
    return absl::OkStatus();
  }

  void SetDown(const std::string& endpoint, bool down) {
    std::lock_guard<std::mutex> lock(mu_);
    if (down) down_.insert(endpoint); else down_.erase(endpoint);
  }
  void SetLost(const std::string& device, bool lost) {
    std::lock_guard<std::mutex> lock(mu_);
    if (lost) lost_.insert(device); else lost_.erase(device);
  }
  void Refuse(const std::string& device) {
    std::lock_guard<std::mutex> lock(mu_);
    refuse_.insert(device);
  }
  size_t open_sessions() const {
    std::lock_guard<std::mutex> lock(mu_);
    return open_.size();
  }
  int opened() const {
    std::lock_guard<std::mutex> lock(mu_);
    return opened_;
  }

 private:
  mutable std::mutex mu_;
  std::map<session::SessionId, AttachedSession> open_;
  std::set<std::string> down_, lost_, refuse_;
  int next_ = 0;
  int opened_ = 0;
};

// rpci.io/emu, the resource of the tests' pool "emu".
inline constexpr char kEmuResource[] = "rpci.io/emu";

// A plugin for node "cn-1" serving pool "emu" whose kubelet sockets are the
// fake kubelet's under `dir` (<dir>/dp, <dir>/pr.sock) and whose CDI specs
// and session dirs go to <dir>/cdi and <dir>/state; pod-resources is read
// only when a test calls SyncUsage.
inline PluginOptions TestPluginOptions(const std::string& dir) {
  PluginOptions o;
  o.node_name = "cn-1";
  o.pools = {"emu"};
  o.plugin_dir = dir + "/dp";
  o.pod_resources_socket = dir + "/pr.sock";
  o.cdi_dir = dir + "/cdi";
  o.state_dir = dir + "/state";
  o.usage_interval = absl::Hours(1);
  return o;
}

using ::rpci::testing::AllHealth;

// Feeds `plugin` the controller's assignments for node cn-1 (pool emu)
// through `client` and reconciles until the kubelet lists `n` Healthy
// devices of rpci.io/emu; false when it does not within 10 s.
inline bool AssignAndAdvertise(controller::testing::LoopbackController& controller, GrpcControllerClient& client,
                               Plugin& plugin, const rpci::testing::FakeKubelet& kubelet, size_t n) {
  client.StartAssignmentWatch(controller::testing::NodeWith("cn-1", "emu"),
                              [&plugin](const rpci::v1::AssignmentSet& set) { plugin.SetAssignments(set); });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline && kubelet.Devices(kEmuResource).size() < n) {
    controller.manager().Reconcile();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return kubelet.WaitForDevices(kEmuResource, AllHealth(n, "Healthy"), absl::Seconds(5));
}

}  // namespace rpci::plugin::testing

#endif  // RPCI_PLUGIN_TESTING_TEST_ENV_H_
