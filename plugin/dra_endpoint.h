#ifndef RPCI_PLUGIN_DRA_ENDPOINT_H_
#define RPCI_PLUGIN_DRA_ENDPOINT_H_

// The DRA kubelet endpoint: gRPC plumbing between the kubelet and the DRA
// driver, in the shape of k8s.io/dynamic-resource-allocation/kubeletplugin.
//  - The DRAPlugin service, v1 and v1beta1 (one handler, two thin adapters:
//    the versions' messages are wire-identical), on
//    <kubelet-dir>/plugins/<driver>/dra.sock.
//  - The pluginregistration Registration service on
//    <kubelet-dir>/plugins_registry/<driver>-reg.sock, served after the DRA
//    socket: the kubelet's plugin watcher finds it, calls GetInfo (type
//    "DRAPlugin", the driver name, the DRA socket, the services served) and
//    reports the outcome with NotifyRegistrationStatus. A failed
//    registration is logged and the registration socket is served afresh a
//    second later, which the watcher sees as a new plugin.
// The kubelet keeps plugins_registry across its restarts and walks it when it
// starts, so a kubelet restart needs nothing from the plugin.
// What NodePrepareResources / NodeUnprepareResources answer comes from a
// DraHandler.

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/dra_driver_name.h"
#include "common/log.h"
#include "common/metrics.h"
#include "third_party/kubelet/dra/v1/api.pb.h"

namespace rpci::plugin {

namespace drapb = ::k8s::io::kubelet::pkg::apis::dra::v1;

// PluginInfo.type of a DRA plugin.
inline constexpr char kDraPluginType[] = "DRAPlugin";
// PluginInfo.supported_versions entries, newest first (the kubelet picks
// the first it knows: v1 from 1.34, v1beta1 on 1.32-1.33).
inline constexpr char kDraServiceV1[] = "v1.DRAPlugin";
inline constexpr char kDraServiceV1beta1[] = "v1beta1.DRAPlugin";

// <kubelet_dir>/plugins_registry/<driver>-reg.sock
std::string DraRegistrationSocket(const std::string& kubelet_dir, const std::string& driver);
// <kubelet_dir>/plugins/<driver>/dra.sock
std::string DraPluginSocket(const std::string& kubelet_dir, const std::string& driver);

// What the DRA endpoint serves. Called concurrently from gRPC threads. One
// claim's failure belongs in its entry's error; every claim of the request
// gets an entry.
class DraHandler {
 public:
  virtual ~DraHandler() = default;
  virtual drapb::NodePrepareResourcesResponse Prepare(const drapb::NodePrepareResourcesRequest& req) = 0;
  virtual drapb::NodeUnprepareResourcesResponse Unprepare(const drapb::NodeUnprepareResourcesRequest& req) = 0;
};

class DraEndpoint {
 public:
  // `handler` must outlive the endpoint; `registrations` (counted on every
  // successful registration the kubelet reports) may be null.
  DraEndpoint(std::string kubelet_dir, std::string driver, DraHandler* handler, Counter* registrations = nullptr);
  ~DraEndpoint();
  DraEndpoint(const DraEndpoint&) = delete;
  DraEndpoint& operator=(const DraEndpoint&) = delete;

  // Serves the DRA socket, then the registration socket. INVALID_ARGUMENT
  // when a socket path is too long, UNAVAILABLE when one cannot be served.
  absl::Status Start();
  // Stops both servers and removes both sockets. Idempotent.
  void Stop();

  // Registrations the kubelet reported successful / failed since Start.
  int registrations() const { return registrations_; }
  int registration_failures() const { return failures_; }

 private:
  class Servers;
  // Serves (again) on the registration socket.
  absl::Status ServeRegistration();
  // Called by NotifyRegistrationStatus.
  void OnRegistrationStatus(bool registered, const std::string& error);
  // Serves the registration socket afresh a second after a failure.
  void RetryLoop();

  const std::string kubelet_dir_;
  const std::string driver_;
  DraHandler* const handler_;
  Counter* const registrations_counter_;
  Logger log_{"plugin.dra"};

  std::atomic<int> registrations_{0};
  std::atomic<int> failures_{0};
  std::mutex mu_;  // serializes serving and Stop
  std::unique_ptr<Servers> servers_;  // mu_
  // Never held with mu_: NotifyRegistrationStatus takes it from a gRPC
  // thread of the server RetryLoop shuts down.
  std::mutex retry_mu_;
  std::condition_variable retry_cv_;
  bool retry_ = false, stopping_ = false;  // retry_mu_
  std::thread retry_thread_;
};

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_DRA_ENDPOINT_H_
