#ifndef RPCI_CONTROLLER_RESOURCE_API_H_
#define RPCI_CONTROLLER_RESOURCE_API_H_

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dra_driver_name.h"
#include "controller/kube/client.h"
#include "controller/model.h"
#include "nlohmann/json.hpp"

namespace rpci::controller {

// The binding conditions (KEP-5007) slices carry with
// --dra-binding-conditions (claim_binder.h).
inline constexpr char kAttachedCondition[] = "rpci.io/Attached";
inline constexpr char kAttachFailedCondition[] = "rpci.io/AttachFailed";

// The allocation results of ResourceClaim `claim` (any served version: the
// allocation has one shape in v1beta1 and v1) that name driver rpci.io.
// FAILED_PRECONDITION when its metadata.uid is not `uid` (the claim was
// deleted and created again) or it is not allocated; INVALID_ARGUMENT when
// a result lacks request, pool or device.
absl::StatusOr<std::vector<ClaimResult>> RpciResultsOf(const nlohmann::json& claim, const std::string& uid);

// The (pool, device) of every rpci.io allocation result of `claims` (a
// ResourceClaim informer's cache).
std::set<std::pair<std::string, std::string>> RpciAllocations(const std::map<std::string, nlohmann::json>& claims);

// OK when `node` may prepare `claim`: its status.allocation.nodeSelector is
// absent (any node) or one of its terms admits the node, a term admitting
// it when each of its metadata.name (matchFields) and kubernetes.io/hostname
// (matchExpressions) requirements with operator In lists the node (other
// requirements, e.g. another driver's labels, are not rpci's to judge).
// PERMISSION_DENIED naming the claim otherwise: a node cannot take a device
// allocated for another.
absl::Status CheckAllocationNode(const nlohmann::json& claim, const std::string& node);

// The resource.k8s.io API as the controller uses it: the version chosen by
// API discovery (GET /apis/resource.k8s.io: "v1" when served, else
// "v1beta1"; found once, retried while it fails) and ResourceClaim reads.
// Thread-safe.
class ResourceApi {
 public:
  explicit ResourceApi(kube::KubeClient* kube) : kube_(kube) {}

  // "v1" or "v1beta1"; NOT_FOUND when the server serves neither (DRA needs
  // Kubernetes 1.32 or later), the client's error when discovery fails.
  absl::StatusOr<std::string> Version();
  // "/apis/resource.k8s.io/<version>".
  absl::StatusOr<std::string> Prefix();

  // GETs ResourceClaim ns/name and returns RpciResultsOf it after
  // CheckAllocationNode for `node`; NOT_FOUND naming the claim when it does
  // not exist.
  absl::StatusOr<std::vector<ClaimResult>> ReadClaim(const std::string& node, const std::string& ns,
                                                     const std::string& name, const std::string& uid);

 private:
  kube::KubeClient* const kube_;
  std::mutex mu_;
  std::string version_;  // empty until discovered
};

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_RESOURCE_API_H_
