#ifndef RPCI_TESTS_KUBELET_FAKE_KUBELET_H_
#define RPCI_TESTS_KUBELET_FAKE_KUBELET_H_

// A test kubelet that speaks the real device-plugin and pod-resources
// protocols from the kubelet's side, over real unix sockets. It follows what
// pkg/kubelet/cm/devicemanager does:
//  - serves Registration on <dir>/kubelet.sock; Register checks the version
//    ("v1beta1") and that the resource name is an extended resource name,
//    dials the plugin at <dir>/<endpoint>, calls GetDevicePluginOptions
//    before answering, then streams ListAndWatch in the background and keeps
//    the latest device list per resource;
//  - admits pods: GetPreferredAllocation (when the plugin offers it) over the
//    healthy unallocated devices, Allocate, PreStartContainer (when
//    required), and records the pod for pod-resources List/Get;
//  - restarts a pod's container as the kubelet does for restartPolicy
//    Always/OnFailure: no Allocate (the response is the one recorded at
//    admission, as the kubelet's checkpoint keeps it), PreStartContainer
//    before every start when the plugin asked for it;
//  - deletes pods: they leave pod-resources at once and their devices are
//    free for the next pod;
//  - restarts: stops, removes every socket in the directory (the plugins'
//    too), and serves kubelet.sock again; plugins must register again.

#include <atomic>
#include <condition_variable>
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
#include "grpcpp/grpcpp.h"
#include "third_party/kubelet/deviceplugin/v1beta1/api.grpc.pb.h"
#include "third_party/kubelet/podresources/v1/api.grpc.pb.h"

namespace rpci::testing {

// One device as the latest ListAndWatch response advertised it.
struct AdvertisedDevice {
  std::string id;
  std::string health;  // "Healthy" / "Unhealthy"
  std::vector<int64_t> numa_nodes;
};

// Conditions on a resource's latest device list, for
// FakeKubelet::WaitForDevices.
// `n` devices, all of `health`.
inline auto AllHealth(size_t n, const std::string& health) {
  return [n, health](const std::vector<AdvertisedDevice>& ds) {
    if (ds.size() != n) return false;
    for (const AdvertisedDevice& d : ds) {
      if (d.health != health) return false;
    }
    return true;
  };
}
// Device `id` listed with `health`.
inline auto HealthOf(const std::string& id, const std::string& health) {
  return [id, health](const std::vector<AdvertisedDevice>& ds) {
    for (const AdvertisedDevice& d : ds) {
      if (d.id == id) return d.health == health;
    }
    return false;
  };
}

// What a plugin registration looked like.
struct Registration {
  std::string resource_name;
  std::string endpoint;
  v1beta1::DevicePluginOptions options;  // as GetDevicePluginOptions answered
  absl::Time at;
};

// One container of an admitted pod and what it got.
struct AdmittedContainer {
  std::string name;
  std::string resource_name;
  std::vector<std::string> device_ids;
  v1beta1::ContainerAllocateResponse response;  // as the plugin answered
  // What the runtime runs: `response` with its CDI devices' edits applied
  // (cdi_runtime.h ApplyCdiDevices), resolved when the container is created
  // (at admission and at every restart).
  v1beta1::ContainerAllocateResponse container;
};

class FakeKubelet {
 public:
  // `plugin_dir` holds kubelet.sock and the plugins' sockets;
  // `pod_resources_socket` is where List/Get are served; `cdi_dir` is the
  // runtime's CDI spec directory (empty: a runtime without CDI, which ignores
  // CDI devices). A CDI device the runtime cannot resolve fails admission or
  // restart with the runtime's error.
  FakeKubelet(std::string plugin_dir, std::string pod_resources_socket, std::string cdi_dir = "");
  ~FakeKubelet();
  FakeKubelet(const FakeKubelet&) = delete;
  FakeKubelet& operator=(const FakeKubelet&) = delete;

  // Removes stale sockets in the plugin dir (as the kubelet does at start),
  // then serves Registration and pod-resources.
  absl::Status Start();
  // Stops serving and drops every plugin connection.
  void Stop();
  // Stop, then Start: kubelet.sock is recreated and plugin sockets are gone.
  absl::Status Restart();

  // ---- observation ----
  // Registrations since the last Start (oldest first).
  std::vector<Registration> registrations() const;
  // Waits until `resource` has registered at least `count` times since the
  // last Start.
  bool WaitForRegistration(const std::string& resource, int count, absl::Duration timeout) const;
  // The latest device list of `resource` (empty when never received).
  std::vector<AdvertisedDevice> Devices(const std::string& resource) const;
  // Number of ListAndWatch responses received for `resource` since Start.
  int ListAndWatchUpdates(const std::string& resource) const;
  // Waits until `pred(devices)` holds for `resource`.
  bool WaitForDevices(const std::string& resource,
                      const std::function<bool(const std::vector<AdvertisedDevice>&)>& pred,
                      absl::Duration timeout) const;

  // ---- pod admission, as the device manager does it ----
  // Picks `count` healthy devices of `resource` not held by another pod
  // (asking the plugin's GetPreferredAllocation when offered), then
  // Allocate and PreStartContainer. On success the pod is recorded and
  // appears in pod-resources. The error is the plugin's, unchanged in code.
  absl::StatusOr<AdmittedContainer> AdmitPod(const std::string& pod_namespace, const std::string& pod_name,
                                             const std::string& container, const std::string& resource, int count);
  // Same, with the devices chosen by the caller (no preferred allocation).
  absl::StatusOr<AdmittedContainer> AdmitPodWithDevices(const std::string& pod_namespace,
                                                         const std::string& pod_name, const std::string& container,
                                                         const std::string& resource,
                                                         const std::vector<std::string>& device_ids);
  // The pod leaves the node: gone from pod-resources, its devices free.
  void RemovePod(const std::string& pod_namespace, const std::string& pod_name);
  // The container exited and is started again: PreStartContainer (when
  // required) with its devices, no Allocate; the recorded container (same
  // response) to run. NOT_FOUND for an unknown pod or container; the
  // plugin's error, unchanged in code, when PreStartContainer fails.
  absl::StatusOr<AdmittedContainer> RestartContainer(const std::string& pod_namespace, const std::string& pod_name,
                                                     const std::string& container);
  // Allocate calls made since construction.
  int allocate_calls() const;

  // Direct calls to a registered plugin, as the kubelet would make them.
  absl::StatusOr<v1beta1::PreferredAllocationResponse> GetPreferredAllocation(
      const std::string& resource, const v1beta1::PreferredAllocationRequest& req);
  absl::StatusOr<v1beta1::AllocateResponse> Allocate(const std::string& resource,
                                                     const v1beta1::AllocateRequest& req);
  absl::Status PreStartContainer(const std::string& resource, const std::vector<std::string>& device_ids);

  const std::string& plugin_dir() const { return plugin_dir_; }
  const std::string& pod_resources_socket() const { return pod_resources_socket_; }
  std::string kubelet_socket() const { return plugin_dir_ + "/kubelet.sock"; }

 private:
  struct Endpoint;  // one connected plugin
  class RegistrationService;
  class PodResourcesService;

  absl::Status Register(const v1beta1::RegisterRequest& req);
  std::shared_ptr<Endpoint> EndpointFor(const std::string& resource) const;
  void RunListAndWatch(std::shared_ptr<Endpoint> ep);
  ::v1::ListPodResourcesResponse ListPods() const;

  const std::string plugin_dir_;
  const std::string pod_resources_socket_;
  const std::string cdi_dir_;
  std::unique_ptr<RegistrationService> registration_service_;
  std::unique_ptr<PodResourcesService> pod_resources_service_;
  std::unique_ptr<grpc::Server> registration_server_;
  std::unique_ptr<grpc::Server> pod_resources_server_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::vector<Registration> registrations_;
  std::map<std::string, std::shared_ptr<Endpoint>> endpoints_;  // by resource
  std::vector<std::thread> watchers_;
  // pod "ns/name" -> containers
  std::map<std::string, std::vector<AdmittedContainer>> pods_;
  int allocate_calls_ = 0;
};

}  // namespace rpci::testing

#endif  // RPCI_TESTS_KUBELET_FAKE_KUBELET_H_
