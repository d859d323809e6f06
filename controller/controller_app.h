#ifndef RPCI_CONTROLLER_CONTROLLER_APP_H_
#define RPCI_CONTROLLER_CONTROLLER_APP_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/tls_settings.h"
#include "controller/identity/identity_server.h"
#include "controller/kube/client.h"
#include "controller/kube/informer.h"
#include "controller/kube/leader_election.h"
#include "controller/model.h"
#include "controller/pool_manager.h"
#include "controller/claim_binder.h"
#include "controller/resource_api.h"
#include "controller/resource_slices.h"
#include "controller/service.h"
#include "controller/store.h"

namespace grpc {
class Server;
}

namespace rpci::controller {

// Everything rpci-controller's flags can say.
struct ControllerOptions {
  std::string store = "local";  // "local" or "kube"
  std::string state_dir = "/var/lib/rpci-controller";
  // --store=kube: the API server. `kube_config` wins when set (tests);
  // otherwise `kubeconfig` (+ `kube_context`), else the in-cluster config.
  std::optional<kube::KubeConfig> kube_config;
  std::string kubeconfig;
  std::string kube_context;
  std::string config_file;  // YAML/JSON with a `pools:` list
  std::string listen = "0.0.0.0:7400";
  std::string http_listen = "0.0.0.0:7401";
  TlsSettings tls;  // fail closed: files, or insecure (warned at every start)
  identity::IdentityOptions node_identity;  // node certificates (--store=kube)
  bool leader_elect = true;  // only with --store=kube
  std::string identity = "rpci-controller";
  std::string lease_name = "rpci-controller";
  std::string lease_namespace;  // empty: `ns`
  // The install namespace (one that exists): DeviceAttachments and their
  // grant Secrets live here. Empty: the client config's namespace (in a
  // cluster, the service account's).
  std::string ns;
  absl::Duration lease_duration = absl::Seconds(15);
  absl::Duration renew_deadline = absl::Seconds(10);
  absl::Duration retry_period = absl::Seconds(2);
  absl::Duration reconcile_interval = absl::Seconds(1);
  // DRA binding conditions (KEP-5007, alpha in Kubernetes 1.34; v1 only):
  // slices ask the scheduler to wait for the attach (claim_binder.h).
  bool dra_binding_conditions = false;
  int64_t default_spares = 1;
  int64_t default_idle_release_seconds = 0;
  absl::Duration node_lease = absl::Seconds(30);
  absl::Duration agent_lease = absl::Seconds(30);
};

// The whole controller as one object: store, pool manager, leader election,
// cluster informers (DevicePools, Pods, Nodes, PcieDevices,
// DeviceAttachments), the reconcile loop, the gRPC services and the health
// endpoint. rpci-controller's main only turns flags into ControllerOptions;
// tests run several of these in one process.
class ControllerApp {
 public:
  // Opens the store and reads the pools file; binds nothing yet.
  // INVALID_ARGUMENT for bad options, the store's error otherwise.
  static absl::StatusOr<std::unique_ptr<ControllerApp>> Create(ControllerOptions options,
                                                                const Clock* clock = Clock::Real());
  ~ControllerApp();
  ControllerApp(const ControllerApp&) = delete;
  ControllerApp& operator=(const ControllerApp&) = delete;

  // Binds the gRPC and HTTP listeners, starts the informers and the
  // reconcile loop. Without leader election the store is loaded first, so
  // the replica acts from the moment it serves. UNAVAILABLE naming the address when one cannot be bound.
  absl::Status Start();

  // Stops everything. With `release_lease` a leader gives the Lease up so a
  // standby takes over at once; without it the replica just goes silent, as
  // a crashed one would. Idempotent.
  void Stop(bool release_lease = true);

  // True while this replica leads and has loaded the store.
  bool acting() const { return acting_; }
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  int identity_port() const { return identity_ ? identity_->port() : 0; }
  const std::string& identity() const { return options_.identity; }
  PoolManager& manager() { return *manager_; }
  MetricsRegistry& metrics() { return metrics_; }

 private:
  ControllerApp(ControllerOptions options, const Clock* clock);
  // The store options_ names (with --store=kube, the cluster client and the
  // DRA APIs too).
  absl::Status OpenStore();
  absl::Status LeaderCheck() const;
  void Loop();
  void Step();
  void StartInformers();
  void OnPools(const kube::Informer::Cache& cache);
  void OnPods(const kube::Informer::Cache& cache);
  void OnNodes(const kube::Informer::Cache& cache);
  void OnDevices(const kube::Informer::Cache& cache);
  void OnAttachments(const kube::Informer::Cache& cache);
  void PostEvents(const std::vector<Decision>& decisions);
  // Writes each DevicePool's status (counts per phase, conditions) when it
  // differs from what the informer last showed.
  void WritePoolStatus();
  // Publishes the DRA-enabled pools' free devices as ResourceSlices
  // (resource_slices.h).
  void PublishSlices();
  // Starts the ResourceClaim informer, once a `both` pool exists or with
  // binding conditions, when the resource.k8s.io version is known
  // (PoolManager::SetClaimAllocations, ClaimBinder::Sync).
  void WatchClaimAllocations();

  const ControllerOptions options_;
  const Clock* const clock_;
  Logger log_;
  MetricsRegistry metrics_;
  std::unique_ptr<kube::KubeClient> kube_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ResourceApi> resources_;  // with --store=kube
  std::unique_ptr<SlicePublisher> slices_;  // with --store=kube
  std::unique_ptr<ClaimBinder> binder_;     // with --dra-binding-conditions
  std::string slices_digest_;               // the offer last synced (loop thread only)
  absl::Time next_slice_sync_ = absl::InfinitePast();
  std::unique_ptr<PoolManager> manager_;
  std::vector<PoolSpec> file_pools_;
  std::unique_ptr<kube::LeaderElector> elector_;
  std::unique_ptr<ControllerService> service_;
  std::unique_ptr<DaemonTls> tls_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<identity::IdentityServer> identity_;
  std::unique_ptr<HealthServer> health_;
  std::string ns_;  // resolved install namespace (kube store)
  kube::Informer* pools_informer_ = nullptr;
  kube::Informer* devices_informer_ = nullptr;
  kube::Informer* nodes_informer_ = nullptr;
  kube::Informer* claims_informer_ = nullptr;  // loop thread only
  std::vector<std::unique_ptr<kube::Informer>> informers_;
  int grpc_port_ = 0;
  int http_port_ = 0;

  std::atomic<bool> acting_{false};
  std::atomic<bool> started_{false};
  std::mutex mu_;  // guards the fields below and wakes the loop
  std::condition_variable wake_;
  bool stop_ = false;
  bool release_on_stop_ = true;
  std::set<std::string> known_nodes_;
  std::set<std::string> seen_attachments_;  // grant ids the informer has shown
  std::thread loop_;
};

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_CONTROLLER_APP_H_
