#ifndef RPCI_CONTROLLER_MODEL_H_
#define RPCI_CONTROLLER_MODEL_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/rpci/v1/device.pb.h"
#include "session/session_id.h"

namespace rpci::controller {

// Where a device is in its life. Derived from a Device's fields (see
// Device::PhaseAt), never stored on its own, so it cannot disagree with them.
enum class DevicePhase { kAvailable, kAssigned, kAttached, kReleasing, kUnhealthy, kDraining };

std::string_view PhaseName(DevicePhase phase);

// How a pool prefers among available devices for a compute node: none (first
// available), zone (same topology.kubernetes.io/zone label), rdma (the device
// has a local RDMA NIC). The CRD spells them "none", "zone", "rdma".
enum class Locality { kNone, kZone, kRdma };

std::string_view LocalityName(Locality locality);
// The Locality a CRD or config spells `name`; false when it names none.
bool ParseLocality(std::string_view name, Locality* locality);

// How a pool's devices reach pods: through the kubelet device plugin
// (placement assigns them to nodes ahead of time), through Dynamic Resource
// Allocation (published in ResourceSlices, attached when a claim is
// prepared), or both (a device offered in a slice only while placement has
// not assigned it). The CRD spells "devicePlugin", "dra", "both".
enum class AllocationMode { kDevicePlugin, kDra, kBoth };

std::string_view AllocationModeName(AllocationMode mode);
bool ParseAllocationMode(std::string_view name, AllocationMode* mode);

// A DevicePool: which devices form one kubelet resource (rpci.io/<name>) and
// how the controller hands them out.
struct PoolSpec {
  std::string name;
  // Device labels (the device server's node labels) that must all match.
  std::map<std::string, std::string> selector;
  int64_t spares_per_node = 0;        // kept assigned, unused, on each compute node
  int64_t max_per_node = 0;           // 0: no limit
  int64_t idle_release_seconds = 0;   // 0: assigned devices are never released for idleness
  Locality locality = Locality::kNone;
  AllocationMode allocation_mode = AllocationMode::kDevicePlugin;

  bool DevicePluginEnabled() const { return allocation_mode != AllocationMode::kDra; }
  bool DraEnabled() const { return allocation_mode != AllocationMode::kDevicePlugin; }
  std::string ResourceName() const { return "rpci.io/" + name; }
  bool Selects(const rpci::v1::ExportedDevice& device) const;
};

// One session permission: device -> pod, with the grant the agent enforces.
// Its id is also the DeviceAttachment object's name.
struct Attachment {
  std::string grant_id;
  std::string device_id;
  std::string node;  // compute node
  // The kubelet's Allocate does not say which pod it allocates for: the
  // plugin claims for an allocation id, and the pod is filled in once the
  // kubelet's pod-resources lists the device (the plugin's usage report).
  std::string allocation;
  std::string pod_namespace;  // empty until known
  std::string pod_name;
  std::string container_name;
  // A grant for a DRA ResourceClaim (PrepareClaim): the claim's uid (empty
  // for device-plugin grants), namespace, name and the request it answers.
  std::string claim_uid;
  std::string claim_namespace;
  std::string claim_name;
  std::string claim_request;
  // Raw CSPRNG bytes. Never in the DeviceAttachment object: the cluster
  // store keeps it in a Secret (GrantSecretToObject).
  std::string token;
  absl::Time created = absl::InfinitePast();
  absl::Time expires = absl::InfinitePast();
  // Counters from the owning agent's session reports.
  session::SessionId session_id;  // empty until the plugin reports it
  bool ForClaim() const { return !claim_uid.empty(); }
  uint64_t writes_applied = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t completions = 0;
};

// A device as the controller tracks it: what its agent exported plus the
// controller's decisions about it.
struct Device {
  rpci::v1::ExportedDevice exported;
  bool healthy = true;
  std::string health_reason;
  absl::Time health_changed = absl::InfinitePast();
  std::string assigned_node;  // empty when not assigned
  absl::Time assigned_changed = absl::InfinitePast();
  absl::Time last_used = absl::InfinitePast();  // idle release counts from here
  std::string releasing_from;                    // node it is being taken from
  absl::Time releasing_until = absl::InfinitePast();
  bool draining = false;    // its agent stopped exporting it while attached
  // Its agent reports it is being reset and zeroed after its last session
  // (DeviceHealthReport.scrubbing): Releasing until a report says clean.
  bool scrubbing = false;
  // An admin asked to take it out of service (annotation kDrainAnnotation,
  // `kubectl rpci drain`): no new claims or assignments; once detached it is
  // unassigned and stays out of the pool until the request is withdrawn.
  bool drain_requested = false;
  std::string attachment;   // grant id, empty when not attached
  std::string reason;       // why the last decision about it was made

  const std::string& id() const { return exported.id(); }
  const std::string& pool() const { return exported.pool(); }
  DevicePhase PhaseAt(absl::Time now) const;
};

// One device a ResourceClaim's allocation gives (status.allocation.devices
// .results[] with driver "rpci.io"): the request it answers, the slice pool
// (the rpci pool's name) and the device's name in the slice.
struct ClaimResult {
  std::string request;
  std::string pool;
  std::string device;
};

// The device's name in a ResourceSlice: a DNS label. Its id when that is
// one (agents make ids that are), else the id lowercased with other
// characters as '-', cut to 54 characters, plus '-' and 8 hex digits of an
// FNV-1a hash of the id (so two ids never share a name in practice).
std::string DraDeviceName(const std::string& device_id);

// A pod the scheduler could not place for lack of an rpci resource.
struct PodDemand {
  std::string pod_namespace;
  std::string pod_name;
  std::string pool;
  int64_t count = 0;
  std::string node_hint;  // spec.nodeName or a kubernetes.io/hostname selector
};

// Time in the Kubernetes wire formats: metav1.Time ("2006-01-02T15:04:05Z")
// and metav1.MicroTime ("2006-01-02T15:04:05.000000Z").
std::string FormatKubeTime(absl::Time t);
std::string FormatKubeMicroTime(absl::Time t);
// INVALID_ARGUMENT naming the text when it is not RFC 3339.
absl::StatusOr<absl::Time> ParseKubeTime(const std::string& text);

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_MODEL_H_
