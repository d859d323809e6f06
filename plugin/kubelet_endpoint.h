#ifndef RPCI_PLUGIN_KUBELET_ENDPOINT_H_
#define RPCI_PLUGIN_KUBELET_ENDPOINT_H_

// The kubelet endpoint: gRPC plumbing between the kubelet and the plugin, in
// the shape of kubernetes pkg/kubelet/cm/devicemanager endpoint.go. One
// DevicePlugin server per pool (resource rpci.io/<pool>) on a unix socket in
// the device-plugin directory, registration with the kubelet after it
// serves, and a watch of the directory: when the kubelet restarts (it
// recreates kubelet.sock and removes our sockets) every pool is served again
// and re-registered. What is served comes from an EndpointHandler.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/dir_watch.h"
#include "common/log.h"
#include "common/metrics.h"
#include "grpcpp/grpcpp.h"
#include "third_party/kubelet/deviceplugin/v1beta1/api.grpc.pb.h"

namespace rpci::plugin {

// What the endpoint serves for each pool. Called concurrently from gRPC
// threads; errors go back to the kubelet as the matching gRPC status.
class EndpointHandler {
 public:
  virtual ~EndpointHandler() = default;
  virtual absl::StatusOr<v1beta1::AllocateResponse> Allocate(const std::string& pool,
                                                             const v1beta1::AllocateRequest& req) = 0;
  virtual absl::StatusOr<v1beta1::PreferredAllocationResponse> Prefer(
      const std::string& pool, const v1beta1::PreferredAllocationRequest& req) const = 0;
  virtual absl::Status PreStart(const std::string& pool, const v1beta1::PreStartContainerRequest& req) = 0;
  // ListAndWatch's devices of `pool` as they would be sent now.
  virtual v1beta1::ListAndWatchResponse DeviceList(const std::string& pool) const = 0;
  // A number that changes whenever DeviceList may have changed.
  virtual uint64_t version() const = 0;
  // Waits until version() differs from `seen` or `timeout` passes (or the
  // handler stops); returns version().
  virtual uint64_t WaitForChange(uint64_t seen, absl::Duration timeout) const = 0;
};

// Socket file name of a pool's server inside the plugin dir.
std::string SocketName(const std::string& pool);
// "rpci.io/<pool>".
std::string ResourceName(const std::string& pool);

class KubeletEndpoint {
 public:
  // `handler` must outlive the endpoint; `registrations` (counted on every
  // successful registration) may be null.
  KubeletEndpoint(std::string plugin_dir, std::vector<std::string> pools, EndpointHandler* handler,
                  Counter* registrations = nullptr);
  ~KubeletEndpoint();
  KubeletEndpoint(const KubeletEndpoint&) = delete;
  KubeletEndpoint& operator=(const KubeletEndpoint&) = delete;

  // Serves every pool, registers with the kubelet when kubelet.sock exists
  // (otherwise when it appears) and starts the watch. INVALID_ARGUMENT when
  // the plugin dir is too long for unix sockets, UNAVAILABLE when a socket
  // cannot be served.
  absl::Status Start();
  // Stops the watch and every server and removes the sockets. Idempotent.
  void Stop();

  // Successful registrations with the kubelet since Start, all pools.
  int registrations() const { return registrations_; }

 private:
  class PoolServer;

  // Serves (again, when `reserve`) and registers every pool.
  void RegisterAll(bool reserve);
  // Re-registers when kubelet.sock is created in the plugin dir and retries
  // failed pools every second. Null `dir_watch`: polling only.
  void WatchLoop(std::unique_ptr<DirWatch> dir_watch);

  const std::string plugin_dir_;
  const std::vector<std::string> pools_;
  EndpointHandler* const handler_;
  Counter* const registrations_counter_;
  Logger log_{"plugin"};

  std::atomic<int> registrations_{0};
  std::atomic<bool> stopping_{false};
  std::mutex registration_mu_;  // serializes RegisterAll and Stop
  std::map<std::string, std::unique_ptr<PoolServer>> servers_;  // registration_mu_ after Start
  std::set<std::string> unregistered_;  // pools to retry; registration_mu_
  std::thread watch_;
};

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_KUBELET_ENDPOINT_H_
