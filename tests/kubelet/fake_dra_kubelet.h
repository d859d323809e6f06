#ifndef RPCI_TESTS_KUBELET_FAKE_DRA_KUBELET_H_
#define RPCI_TESTS_KUBELET_FAKE_DRA_KUBELET_H_

// The kubelet's DRA side, over real unix sockets, as pkg/kubelet does it:
//  - the plugin watcher: watches <kubelet-dir>/plugins_registry (inotify),
//    and at start walks it for sockets already there (plugins outlive a
//    kubelet restart; the kubelet does not remove them); files starting
//    with '.' are ignored. For each socket: GetInfo (1 s), validation by the
//    DRA handler (type "DRAPlugin", a driver name, an endpoint, a
//    supported_versions entry it serves: "v1.DRAPlugin" preferred over
//    "v1beta1.DRAPlugin", or only the versions the kubelet was configured
//    with, as on 1.32-1.33), then NotifyRegistrationStatus with the outcome.
//    The reconciler runs every second and tries again every socket not
//    registered (GetInfo failures and refusals alike). A removed socket
//    deregisters the driver.
//  - the DRA manager's calls: NodePrepareResources / NodeUnprepareResources
//    on the chosen service with the kubelet's 45 s call timeout; the
//    response must hold an entry for every claim.
//  - the runtime's part: the CDI ids a claim got are resolved against the
//    CDI dir and applied to the container (cdi_runtime.h).
// Restart: stop (connections dropped, nothing removed), start again.

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/dir_watch.h"
#include "grpcpp/grpcpp.h"
#include "third_party/kubelet/deviceplugin/v1beta1/api.pb.h"
#include "third_party/kubelet/dra/v1/api.pb.h"

namespace rpci::testing {

namespace drapb = ::k8s::io::kubelet::pkg::apis::dra::v1;

// One registration attempt, as the kubelet saw it.
struct DraRegistration {
  std::string socket;  // in plugins_registry
  std::string type, driver, endpoint;
  std::vector<std::string> supported_versions;
  std::string chosen_service;  // empty when refused
  std::string error;           // why it was refused
};

// A claim reference, as the kubelet sends it.
struct ClaimRef {
  std::string ns, name, uid;
};

class FakeDraKubelet {
 public:
  // `services`: the DRA services this kubelet speaks, newest first (default
  // as 1.34+: v1 then v1beta1).
  FakeDraKubelet(std::string kubelet_dir, std::string cdi_dir,
                 std::vector<std::string> services = {"v1.DRAPlugin", "v1beta1.DRAPlugin"});
  ~FakeDraKubelet();
  FakeDraKubelet(const FakeDraKubelet&) = delete;
  FakeDraKubelet& operator=(const FakeDraKubelet&) = delete;

  // Creates plugins_registry and plugins, registers the sockets already
  // there and watches for new ones.
  absl::Status Start();
  void Stop();
  absl::Status Restart();

  // ---- observation ----
  std::vector<DraRegistration> registrations() const;
  // Waits until `driver` is registered (since the last Start) `count` times.
  bool WaitForDriver(const std::string& driver, int count, absl::Duration timeout) const;
  // The chosen service of a registered driver; empty when not registered.
  std::string ChosenService(const std::string& driver) const;

  // ---- the DRA manager's calls ----
  // The raw RPCs on the registered driver's chosen service, 45 s timeout.
  absl::StatusOr<drapb::NodePrepareResourcesResponse> NodePrepareResources(const std::string& driver,
                                                                           const std::vector<ClaimRef>& claims);
  absl::StatusOr<drapb::NodeUnprepareResourcesResponse> NodeUnprepareResources(const std::string& driver,
                                                                               const std::vector<ClaimRef>& claims);
  // One claim: its CDI ids in device order, or the claim's error
  // (FAILED_PRECONDITION with the plugin's text), or INTERNAL when the
  // response has no entry for it (the kubelet treats that as an error).
  absl::StatusOr<std::vector<std::string>> PrepareClaim(const std::string& driver, const ClaimRef& claim);
  absl::Status UnprepareClaim(const std::string& driver, const ClaimRef& claim);

  // The runtime: the container's env, mounts and device nodes for the CDI
  // ids (cdi_runtime.h).
  absl::StatusOr<v1beta1::ContainerAllocateResponse> ContainerEdits(const std::vector<std::string>& cdi_ids) const;

  std::string registry_dir() const { return kubelet_dir_ + "/plugins_registry"; }
  const std::string& cdi_dir() const { return cdi_dir_; }

 private:
  struct Driver;
  void WatchLoop(std::unique_ptr<DirWatch> dir_watch);
  // GetInfo, validation, NotifyRegistrationStatus; whether it registered.
  bool RegisterSocket(const std::string& socket);
  std::shared_ptr<Driver> DriverNamed(const std::string& driver) const;
  // One DRA call on a registered driver's chosen service, through the v1 or
  // the v1beta1 stub (both take the v1 messages), with the kubelet's timeout.
  template <typename Request, typename Response, typename V1Stub, typename BetaStub>
  absl::StatusOr<Response> Call(const std::string& driver, const Request& req,
                                grpc::Status (V1Stub::*v1)(grpc::ClientContext*, const Request&, Response*),
                                grpc::Status (BetaStub::*beta)(grpc::ClientContext*, const Request&, Response*),
                                const std::string& what) const;

  const std::string kubelet_dir_;
  const std::string cdi_dir_;
  const std::vector<std::string> services_;
  std::atomic<bool> stopping_{false};
  std::thread watch_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::vector<DraRegistration> registrations_;          // since Start
  std::map<std::string, std::shared_ptr<Driver>> drivers_;  // by name
  // The plugin watcher's desired state (socket -> stamp of its creation) and
  // the reconciler's actual state (socket -> stamp registered).
  std::map<std::string, int64_t> desired_, registered_;
  int64_t stamp_ = 0;
};

}  // namespace rpci::testing

#endif  // RPCI_TESTS_KUBELET_FAKE_DRA_KUBELET_H_
