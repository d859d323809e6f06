#ifndef RPCI_CONTROLLER_POOL_MANAGER_H_
#define RPCI_CONTROLLER_POOL_MANAGER_H_

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "controller/model.h"
#include "controller/placement.h"
#include "controller/store.h"
#include "proto/rpci/v1/controller.pb.h"

namespace rpci::controller {

// One decision of the policy, as logged and counted.
struct Decision {
  std::string action;  // "assign", "release", "reclaim", "attach", "detach", "unhealthy", ...
  std::string device_id;
  std::string node;
  std::string reason;  // a CamelCase code from a closed set (a metric label)
  std::string detail;  // free text: the pod, an agent's or plugin's words; never a label
};

// The pool manager: the single owner of devices, compute nodes, agents,
// assignments and attachments. Inputs come from agents and plugins (gRPC),
// pools and pending pods (config or the cluster) and the clock; Reconcile()
// applies the assignment policy. Every change is committed to the Store before
// the call that made it returns (or kept dirty and retried on the next call
// when the store fails). Thread-safe.
//
// Invariants (CheckInvariants): a device is assigned to at most one node and
// attached to at most one pod, an attachment's device is assigned to the
// attachment's node, and an unhealthy device is never newly assigned.
class PoolManager {
 public:
  struct Options {
    absl::Duration heartbeat_interval = absl::Seconds(10);
    absl::Duration agent_lease = absl::Seconds(30);  // agent silent this long: its devices are lost
    absl::Duration node_lease = absl::Seconds(30);   // plugin silent this long: node is dead
    absl::Duration release_grace = absl::Seconds(10);  // Releasing lasts this long
    absl::Duration usage_grace = absl::Seconds(30);  // a new attachment may be missing from usage reports
    absl::Duration grant_ttl = absl::Hours(24);
    // Most devices one store commit carries: a pass that changes every device
    // commits them in batches of this many, never copying (and the store
    // never encoding) all of them at once.
    size_t max_batch_devices = 8192;
    // Policy for pools that devices or nodes name but no DevicePool defines.
    PoolSpec default_pool;
  };

  // `store`, `clock` and `metrics` must outlive the manager; `metrics` may be
  // null.
  PoolManager(Store* store, const Clock* clock, Options options, MetricsRegistry* metrics = nullptr);
  PoolManager(const PoolManager&) = delete;
  PoolManager& operator=(const PoolManager&) = delete;

  // Replaces all state with the store's. Agents and compute nodes named by
  // the stored devices get one lease from now to register again before their
  // devices are reclaimed.
  absl::Status Load();

  // ---- agents (device servers); `node` is already authenticated ----
  absl::StatusOr<rpci::v1::RegisterResponse> RegisterAgent(const rpci::v1::RegisterAgentRequest& req);
  // NOT_FOUND when the agent is not registered (e.g. after a controller
  // restart): it must call RegisterAgent again.
  absl::Status AgentHeartbeat(const rpci::v1::AgentHeartbeatRequest& req);
  // The live grants for devices on `agent_node`.
  std::vector<rpci::v1::SessionGrant> GrantsFor(const std::string& agent_node) const;

  // ---- plugins (compute nodes) ----
  absl::StatusOr<rpci::v1::RegisterResponse> RegisterNode(const rpci::v1::RegisterNodeRequest& req);
  absl::Status NodeHeartbeat(const std::string& node);  // NOT_FOUND when not registered
  rpci::v1::AssignmentSet AssignmentsFor(const std::string& node) const;
  // FAILED_PRECONDITION unless the device is assigned to req.node, healthy
  // and not attached to another pod; idempotent for the same pod/container.
  absl::StatusOr<rpci::v1::ClaimResponse> Claim(const rpci::v1::ClaimRequest& req);
  // Idempotent: releasing what is already released is OK.
  absl::Status Release(const rpci::v1::ReleaseRequest& req);
  absl::Status ReportUsage(const rpci::v1::ReportUsageRequest& req);

  // ---- Dynamic Resource Allocation (the plugin's PrepareClaim) ----
  // Grants `results` (the claim's rpci.io allocation results, read from the
  // API by the caller) to req.node: each names a device of a DRA-enabled
  // pool (by DraDeviceName) that is healthy, not draining, not assigned by
  // placement, not attached and not releasing; it is assigned to the node
  // and granted as Claim grants. All devices or none. FAILED_PRECONDITION
  // naming the device and its holder otherwise; NOT_FOUND when the node is
  // not registered. Idempotent per claim uid: a claim already prepared gets
  // its grants again (PERMISSION_DENIED when prepared for another node).
  absl::StatusOr<rpci::v1::PrepareClaimResponse> PrepareClaim(const rpci::v1::NodeClaimRequest& req,
                                                              const std::vector<ClaimResult>& results);
  // Revokes the claim's grants and takes its devices back (Releasing for
  // release_grace while their agent scrubs them, then Available). OK for an
  // unknown claim; PERMISSION_DENIED when it was prepared for another node.
  absl::Status UnprepareClaim(const rpci::v1::NodeClaimRequest& req);
  // Devices a DRA-enabled pool offers now (for its ResourceSlices): healthy,
  // not draining, not assigned, attached or releasing, agent alive. By pool.
  std::map<std::string, std::vector<rpci::v1::ExportedDevice>> DraOffer() const;
  // The (pool, device name) pairs the scheduler has allocated to
  // ResourceClaims of driver rpci.io (the claims informer's view). In a
  // `both` pool placement never assigns one of them to the device plugin:
  // the claim's PrepareClaim would find it held.
  void SetClaimAllocations(std::set<std::pair<std::string, std::string>> allocated);
  // Registered compute nodes serving `pool` (the nodes a slice reaches).
  std::map<std::string, std::vector<std::string>> NodesByPool() const;
  // The DRA-enabled pools (DevicePools whose allocationMode is dra or both).
  std::vector<PoolSpec> DraPools() const;

  // ---- cluster inputs ----
  void SetPools(const std::vector<PoolSpec>& pools);
  void SetDemand(const std::vector<PodDemand>& demand);
  void NodeGone(const std::string& node);  // its Node object was deleted
  // Kubernetes Node labels by node name (the Node informer's view). Compute
  // nodes' labels drive locality; a device server's labels are merged into
  // its devices' labels (the agent's own labels win) for pool selectors.
  void SetNodeLabels(const std::map<std::string, std::map<std::string, std::string>>& labels);
  // Admin drain requests by device id (kDrainAnnotation); devices not named
  // keep theirs. A draining device gets no new claim or assignment and is
  // unassigned once it is detached.
  void SetDrainRequests(const std::map<std::string, bool>& requests);
  // The DeviceAttachment object `grant_id` was deleted by someone else:
  // detaches the device (the agent revokes the session). OK when the grant
  // is already gone.
  absl::Status AttachmentDeleted(const std::string& grant_id);

  // One pass of the policy: expire silent agents and nodes, keep spares,
  // meet pod demand, release idle devices. Returns the decisions made (only
  // the last ones when the pass made more than TakeDecisions keeps).
  std::vector<Decision> Reconcile();

  // ---- observation ----
  // Changes whenever anything watchers see changes.
  uint64_t version() const;
  // Waits until version() != seen or the timeout passes; returns version().
  uint64_t WaitForChange(uint64_t seen, absl::Duration timeout) const;
  absl::Status CheckInvariants() const;
  std::vector<Device> Devices() const;
  std::vector<Attachment> Attachments() const;
  absl::StatusOr<Device> GetDevice(const std::string& id) const;
  // Decisions since the last call (at most the last 100 000).
  std::vector<Decision> TakeDecisions();
  // Devices by pool, then phase name ("Available", ...), now.
  std::map<std::string, std::map<std::string, int64_t>> PhaseCounts() const;
  // Store keys of objects the store refused and that wait for a retry.
  std::vector<std::string> StoreBacklog() const;

 private:
  // Every change to the state: bumps version_ and wakes WaitForChange.
  void BumpVersion() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct Agent {
    std::string session_endpoint;
    std::string fabric_provider;
    absl::Time last_seen;
    bool registered = false;  // false: only known from the store
    bool alive = true;
  };
  struct Node {
    std::set<std::string> pools;
    std::vector<rpci::v1::RdmaNic> nics;
    std::map<std::string, std::string> labels;
    absl::Time last_seen;
    bool registered = false;
    bool gone = false;
  };

  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropNodeLocked(const std::string& node, const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Devices agent `node` registered before and no longer exports: removed,
  // or draining while an attachment still holds one.
  void ForgetUnexportedLocked(const std::string& node, const std::set<std::string>& exported)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies placement's moves (PlacePool) for one pool.
  void ReconcilePoolLocked(const PoolSpec& pool, const std::vector<Device*>& devices, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AssignLocked(Device& d, const std::string& node, const std::string& reason, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnassignLocked(Device& d, const std::string& action, const std::string& reason, absl::Duration grace,
                      absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DetachLocked(Device& d, const std::string& reason, const std::string& detail = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The one place a grant is made (Claim and PrepareClaim): a new grant id
  // and token for `a` (holder fields set) on d, which is assigned to a.node
  // and unattached; d is attached to it. Not yet flushed.
  absl::StatusOr<std::string> GrantLocked(Device& d, Attachment a, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OK when d may be prepared for a claim now.
  absl::Status DraFreeLocked(const Device& d, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The device of DRA-enabled `pool` named `name` in its slice.
  absl::StatusOr<Device*> DraDeviceLocked(const ClaimResult& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Undoes a half-made PrepareClaim (grants and assignments); returns `why`.
  absl::Status RollBackClaimLocked(const std::vector<Device*>& devices, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<rpci::v1::PrepareClaimResponse> PreparedLocked(const std::string& claim_uid,
                                                                const std::string& node) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyNodeLabelsLocked(Device& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the pod a usage report names on d's attachment; whether it changed.
  bool NamePodLocked(const Device& d, const rpci::v1::DeviceUsage& u) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `detail` (an agent's own words) becomes the health reason when given.
  void SetHealthLocked(Device& d, bool healthy, const std::string& reason, absl::Time now,
                       const std::string& detail = "") ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the agent's heartbeat says of d's scrub (Device::scrubbing).
  void SetScrubbingLocked(Device& d, bool scrubbing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a decision: counted by (pool, action, reason), logged and kept
  // with `detail`.
  void DecideLocked(const std::string& action, const Device& d, const std::string& node, const std::string& reason,
                    const std::string& detail = "") ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkDirtyLocked(const std::string& device_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits what is dirty and due. Objects the store refuses stay dirty and
  // are retried with a per-object backoff; each refusal is logged, counted
  // and reported as a "persist-failed" decision. Returns an error only when
  // one of `mine` (store keys the caller needs written now; they skip the
  // backoff) failed.
  absl::Status FlushLocked(const std::set<std::string>& mine = {}) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits one batch and settles each object: written ones are no longer
  // dirty; refused ones are noted (and *mine_failed set when one of `mine`).
  void CommitLocked(const StoreBatch& batch, const std::set<std::string>& mine, absl::Time now,
                    absl::Status* mine_failed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteStoreFailureLocked(const std::string& key, const std::string& device_id, const absl::Status& error,
                              absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const PoolSpec& PoolOfLocked(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGaugesLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  rpci::v1::SessionGrant GrantOf(const Attachment& a) const;
  // Attached to a ResourceClaim's grant.
  bool HeldForClaimLocked(const Device& d) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store* const store_;
  const Clock* const clock_;
  const Options options_;
  std::unique_ptr<MetricsRegistry> own_metrics_;
  MetricsRegistry* metrics_;
  CounterFamily* decisions_total_;
  GaugeFamily* devices_gauge_;
  CounterFamily* store_errors_;
  Logger log_;

  // std::mutex, not absl::Mutex: Debian's absl is not built for TSan, so
  // TSan would not see absl::Mutex's synchronization.
  mutable std::mutex mu_;
  mutable std::condition_variable version_changed_;  // notified by BumpVersion
  std::map<std::string, Device> devices_ ABSL_GUARDED_BY(mu_);
  // Device ids by the device server (agent node) exporting them: every
  // device of devices_ is in its agent's set.
  // B-tree sets: ~half the memory of std::set's node per id at 100k.
  std::map<std::string, absl::btree_set<std::string>> agent_devices_ ABSL_GUARDED_BY(mu_);
  // Device ids by the compute node they are assigned to (AssignLocked and
  // UnassignLocked keep it): a watch stream's refresh reads its node's only.
  std::map<std::string, absl::btree_set<std::string>> node_devices_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Attachment> attachments_ ABSL_GUARDED_BY(mu_);  // by grant id
  std::map<std::string, Agent> agents_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Node> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, PoolSpec> pools_ ABSL_GUARDED_BY(mu_);
  std::vector<PodDemand> demand_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, std::string>> node_labels_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<std::string, std::string>> claim_allocated_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> dirty_devices_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> dirty_attachments_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Attachment> deleted_attachments_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> deleted_devices_ ABSL_GUARDED_BY(mu_);
  struct Retry {
    int failures = 0;
    absl::Time next;
  };
  std::map<std::string, Retry> retry_ ABSL_GUARDED_BY(mu_);  // by store key
  std::set<std::string> drained_ ABSL_GUARDED_BY(mu_);  // detached while draining: to remove
  std::vector<Decision> decisions_ ABSL_GUARDED_BY(mu_);
  uint64_t decisions_made_ ABSL_GUARDED_BY(mu_) = 0;  // ever, including ones no longer kept
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 1;
};

// `n` bytes from OpenSSL's CSPRNG; INTERNAL if it cannot be seeded.
absl::StatusOr<std::string> RandomBytes(size_t n);

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_POOL_MANAGER_H_
