#ifndef RPCI_PLUGIN_PLUGIN_H_
#define RPCI_PLUGIN_PLUGIN_H_

// The kubelet device plugin's allocation logic; the kubelet endpoint
// (kubelet_endpoint.h: one DevicePlugin server per pool, registration,
// re-registration on kubelet restarts) serves it. It advertises the devices the
// controller assigned to this node (with health), and on Allocate claims
// each device, reserves a mirroring session with its agent and hands the
// container env, mounts and CDI names. Background loops: health (agent
// reachability, session liveness), usage (pod-resources List -> ReportUsage,
// release sessions of pods that are gone). docs/plugin.md.

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
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/metrics.h"
#include "plugin/container_edits.h"
#include "plugin/controller_client.h"
#include "plugin/kubelet_endpoint.h"
#include "plugin/session_opener.h"
#include "proto/rpci/v1/controller.pb.h"
#include "third_party/kubelet/deviceplugin/v1beta1/api.grpc.pb.h"

namespace rpci::plugin {

struct PluginOptions {
  std::string node_name;
  // Pools served through the device-plugin API: each becomes resource
  // rpci.io/<pool>.
  std::vector<std::string> pools;
  // Pools served through Dynamic Resource Allocation (dra_driver.h); a pool
  // may be in both lists.
  std::vector<std::string> dra_pools;
  // The kubelet's root: DRA sockets go under plugins_registry/ and plugins/.
  std::string kubelet_dir = "/var/lib/kubelet";
  std::string plugin_dir = "/var/lib/kubelet/device-plugins";
  std::string pod_resources_socket = "/var/lib/kubelet/pod-resources/kubelet.sock";
  std::string cdi_dir = "/var/run/cdi";
  // How devices' env, mounts and device nodes reach containers: the Allocate
  // response (default: every kubelet and runtime applies it) or CDI specs in
  // cdi_dir (--cdi=on, for runtimes with CDI enabled: containerd 1.7+ with
  // enable_cdi, CRI-O; kubelet 1.28+ with DevicePluginCDIDevices).
  DeviceEditsVia device_edits = DeviceEditsVia::kAllocateResponse;
  // Host directory of per-device session dirs (key file, session.json).
  std::string state_dir = "/var/run/rpci/plugin";
  // Where a session dir appears inside the container.
  std::string container_dir = "/var/run/rpci";
  // CA bundle (PEM) of the agents' TLS certificates, copied into every session
  // dir for the workload (RPCI_<n>_CA_FILE); empty when agents speak
  // plaintext.
  std::string session_ca_pem;
  // Group (gid) of session dirs and key files, for non-root workloads whose
  // pods list it in securityContext.supplementalGroups; -1: key root-only.
  int64_t session_group = -1;
  // NUMA node of the local NIC the fabric uses, advertised as the devices'
  // topology; -1 when unknown (no topology sent).
  int64_t nic_numa_node = -1;
  // Ports the workload's fabric endpoint may listen on (libfabric's tcp
  // provider: FI_TCP_PORT_LOW_RANGE/HIGH_RANGE in the container's
  // environment), so NetworkPolicies can name them; 0: any port.
  int fabric_port_low = 0, fabric_port_high = 0;
  // sysfs the RDMA NICs are read from: with verbs, a container gets the
  // uverbs device of the NIC that reaches its agent (SessionDeviceNodes).
  std::string sysfs_root = "/sys";
  absl::Duration health_interval = absl::Milliseconds(500);
  // How often pod-resources is read (and usage reported): a pod's end is
  // noticed within this, so it bounds the device hand-over time.
  absl::Duration usage_interval = absl::Seconds(1);
  // A session is released as soon as pod-resources stops listing its device
  // for the pod that held it; one pod-resources has never listed is released
  // once it is older than this (the kubelet records the pod only after
  // Allocate returns).
  absl::Duration release_grace = absl::Seconds(30);
  MetricsRegistry* metrics = nullptr;  // optional
};

// Parses the pool list "<pool>[:<mode>],..." (mode "device-plugin", the
// default, "dra" or "both") into options->pools and options->dra_pools.
// INVALID_ARGUMENT naming the entry for an empty or malformed pool name or
// an unknown mode, or when no pool is given.
absl::Status ParsePools(const std::string& text, PluginOptions* options);
// A pool name as rpci-plugin accepts it: not empty, no '/', '=', ':', ','
// or space.
absl::Status CheckPoolName(const std::string& pool);
// What the device plugin and the DRA driver check before they start: a
// node name, and at least one pool (`kind`: "pools", "DRA pools"), each
// named as CheckPoolName accepts. INVALID_ARGUMENT saying which is wrong.
absl::Status CheckNodeAndPools(const std::string& node, const std::vector<std::string>& pools, absl::string_view kind);

// Parses --cdi: "off" (the Allocate response carries devices' edits) or "on"
// (CDI specs do). INVALID_ARGUMENT naming the text otherwise.
absl::Status ParseCdiMode(const std::string& text, PluginOptions* options);

// Parses "LOW-HIGH" (1 <= LOW <= HIGH <= 65535) into the options; "" is
// "any port". INVALID_ARGUMENT naming the text otherwise.
absl::Status ParseFabricPortRange(const std::string& text, PluginOptions* options);

// The allocation logic behind the kubelet endpoint (kubelet_endpoint.h),
// which serves it to the kubelet.
class Plugin : private EndpointHandler {
 public:
  // `controller` and `sessions` must outlive the plugin.
  Plugin(PluginOptions options, ControllerApi* controller, SessionOpener* sessions);
  ~Plugin() override;
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  // Serves every pool, registers with the kubelet when kubelet.sock exists
  // (otherwise when it appears), and starts the background loops.
  // INVALID_ARGUMENT for bad options, UNAVAILABLE when a socket cannot be
  // served.
  absl::Status Start();
  // Stops serving and the loops. Sessions stay open on the agents.
  void Stop();

  // Input: the node's complete assignment set (from the controller's
  // WatchAssignments). Thread-safe.
  void SetAssignments(const rpci::v1::AssignmentSet& set);

  // One pass of the health loop / usage loop (they also run on their own).
  void CheckHealth();
  absl::Status SyncUsage();

  // ---- observation ----
  // Devices that hold a session, sorted.
  std::vector<std::string> SessionDevices() const;
  // Successful registrations with the kubelet since Start, all pools.
  int registrations() const { return endpoint_->registrations(); }
  // ListAndWatch devices of `pool` as they would be sent now.
  v1beta1::ListAndWatchResponse DeviceList(const std::string& pool) const override;

 private:
  struct Held {
    AttachedSession session;
    std::string pool;
    absl::Time allocated;
    bool live = true;
    bool listed = false;  // pod-resources has listed the device for a pod
    std::string pod_namespace, pod_name, container;  // from pod-resources
  };

  // Device-plugin RPCs, per pool (EndpointHandler).
  absl::StatusOr<v1beta1::AllocateResponse> Allocate(const std::string& pool,
                                                     const v1beta1::AllocateRequest& req) override;
  absl::StatusOr<v1beta1::PreferredAllocationResponse> Prefer(
      const std::string& pool, const v1beta1::PreferredAllocationRequest& req) const override;
  absl::Status PreStart(const std::string& pool, const v1beta1::PreStartContainerRequest& req) override;
  struct Allocation;
  // Allocate's steps. Validate: every device is assigned here in the pool
  // and requested once; marks them allocating and releases stale sessions.
  absl::Status ValidateAllocate(const v1beta1::AllocateRequest& req, Allocation& alloc);
  // Claims device `id`, opens its session and writes its session dir and CDI
  // spec (`index`: its place in the container's devices); appends to
  // sessions/paths.
  absl::Status AttachDevice(const std::string& id, int index, Allocation& alloc,
                            std::vector<AttachedSession>& sessions, std::vector<SessionPaths>& paths);
  // Releases what `alloc` acquired; returns `cause` prefixed.
  absl::Status RollBackAllocate(const Allocation& alloc, const absl::Status& cause);
  // Records the sessions as held.
  void CommitAllocate(Allocation& alloc);
  // Allocate's claim of one device for `allocation`; a claim refused because
  // an allocation this plugin no longer holds has the device is released and
  // made again.
  absl::StatusOr<rpci::v1::ClaimResponse> ClaimFor(const std::string& device_id, const std::string& allocation);
  // One container's response: env, mounts, CDI names, the fabric port range.
  v1beta1::ContainerAllocateResponse ContainerResponse(const std::string& pool,
                                                       const std::vector<AttachedSession>& sessions,
                                                       const std::vector<SessionPaths>& paths) const;
  // Waits until the state version differs from `seen` or `timeout` passes.
  uint64_t WaitForChange(uint64_t seen, absl::Duration timeout) const override;
  uint64_t version() const override;

  // Releases one held session: close on the agent, release the claim,
  // remove its files. Best effort; logs what fails.
  void ReleaseHeld(const Held& held, const std::string& reason);
  // Who holds each of our devices, by device id, from pod-resources List.
  struct Owner {
    std::string ns, pod, container;
  };
  absl::StatusOr<std::map<std::string, Owner>> ListOwners() const;
  void HealthLoop();
  void UsageLoop();
  bool Healthy(const rpci::v1::Assignment& a) const;  // mu_ held

  const PluginOptions options_;
  ControllerApi* const controller_;
  SessionOpener* const sessions_;
  Logger log_{"plugin"};
  std::unique_ptr<MetricsRegistry> own_metrics_;
  MetricsRegistry* metrics_;
  CounterFamily* allocations_;
  Gauge* sessions_gauge_;
  std::unique_ptr<KubeletEndpoint> endpoint_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  uint64_t version_ = 1;
  std::map<std::string, rpci::v1::Assignment> assignments_;  // by device id
  std::map<std::string, bool> agent_ok_;                     // by endpoint
  std::map<std::string, Held> held_;                         // by device id
  std::set<std::string> allocating_;                         // device ids in an Allocate

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  std::vector<std::thread> threads_;
};

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_PLUGIN_H_
