#ifndef RPCI_CONTROLLER_RESOURCE_SLICES_H_
#define RPCI_CONTROLLER_RESOURCE_SLICES_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "controller/kube/client.h"
#include "controller/pool_manager.h"
#include "controller/resource_api.h"
#include "nlohmann/json.hpp"
#include "proto/rpci/v1/device.pb.h"

namespace rpci::controller {

// What one DRA-enabled pool offers: its devices free now (PoolManager::
// DraOffer), the compute nodes serving it (the slice's nodeSelector) and
// the DevicePool's uid (the slices' owner; empty for a pool from the
// controller's config file: no ownerReference, the label still marks them).
struct PoolOffer {
  std::vector<rpci::v1::ExportedDevice> devices;
  std::vector<std::string> nodes;
  std::string owner_uid;
};

// Every DRA-enabled pool's offer now; `owner_uids` are the DevicePools'
// uids by name.
std::map<std::string, PoolOffer> DraOffers(const PoolManager& manager,
                                           const std::map<std::string, std::string>& owner_uids);

// A ResourceSlice device in v1's shape: {name: DraDeviceName(id),
// attributes, capacity}. Attributes (in the driver's domain, rpci.io):
// pool, deviceServer (the device server node), backend, bdf, vendorId,
// deviceId, subsystemVendorId, subsystemDeviceId, classCode, revision (ints),
// vendorName, deviceName, className (strings cut to 64 characters),
// numaNode, localNics (the NIC names, comma-separated), rdmaLocal (has a
// local RDMA NIC), zone (the device server's topology.kubernetes.io/zone,
// when labelled). Capacity: bar<i> (each memory BAR's size in bytes), dma
// (the DMA space the agent serves, bytes; when the agent reports it).
nlohmann::json SliceDevice(const rpci::v1::ExportedDevice& device);

// The slices of one pool for resource.k8s.io `version` ("v1" or "v1beta1",
// where a device's fields are nested under `basic`): devices sorted by
// name, at most 128 a slice, named rpci-<pool>-<i>; spec.pool {name: the
// pool, generation, resourceSliceCount}; nodeSelector: one term matching
// the nodes by metadata.name; labels app.kubernetes.io/managed-by:
// rpci-controller and rpci.io/pool; owned by the DevicePool when its uid is
// known. No slice for a pool no node serves.
// With `binding_conditions` (v1 only) each device also carries
// bindingConditions [kAttachedCondition], bindingFailureConditions
// [kAttachFailedCondition] and bindsToNode: true (claim_binder.h).
std::vector<nlohmann::json> PoolSlices(const std::string& pool, const PoolOffer& offer, const std::string& version,
                                       int64_t generation, bool binding_conditions = false);

// Keeps the cluster's ResourceSlices of driver rpci.io equal to the
// offers: a pool whose slices differ (devices, nodes, count) is written
// whole with its generation bumped past the highest one seen, extra slices
// deleted; slices of pools no longer offered (the DevicePool deleted or no
// longer DRA-enabled, or no node serves it) are deleted. Only slices with
// the managed-by label are touched. Errors name the slice; the next Sync
// retries.
class SlicePublisher {
 public:
  SlicePublisher(kube::KubeClient* kube, ResourceApi* api, bool binding_conditions = false)
      : kube_(kube), api_(api), binding_conditions_(binding_conditions) {}
  absl::Status Sync(const std::map<std::string, PoolOffer>& offers);

 private:
  absl::Status SyncPool(const std::string& prefix, const std::string& version, const std::string& pool,
                        const PoolOffer* offer, const std::vector<nlohmann::json>& existing);

  kube::KubeClient* const kube_;
  ResourceApi* const api_;
  const bool binding_conditions_;
};

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_RESOURCE_SLICES_H_
