#ifndef RPCI_CONTROLLER_CLAIM_BINDER_H_
#define RPCI_CONTROLLER_CLAIM_BINDER_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "controller/kube/client.h"
#include "controller/pool_manager.h"
#include "controller/resource_api.h"

namespace rpci::controller {

// Binding conditions (KEP-5007, resource.k8s.io/v1, alpha from Kubernetes
// 1.34 behind the DRADeviceBindingConditions and DRAResourceClaimDeviceStatus
// gates). With them the slices' devices carry bindingConditions
// [kAttachedCondition], bindingFailureConditions [kAttachFailedCondition] and
// bindsToNode: the scheduler then waits, before binding the pod, until the
// driver reports the device attached for the node it chose. The binder is
// that driver side: for each allocated claim whose rpci.io results carry the
// condition, it prepares the claim for the node of the allocation's
// nodeSelector (PoolManager::PrepareClaim: the grant exists before the
// kubelet asks, and the kubelet's PrepareClaim gets the same grant) and sets
// the device's status condition Attached True, or AttachFailed True with
// the refusal (the scheduler then gives the allocation up). Claims that are
// gone lose their grants (UnprepareClaim), as the kubelet may never be asked
// to unprepare a claim whose pod was never bound. The claims come from the
// controller's ResourceClaim informer.
// The condition names (kAttachedCondition, kAttachFailedCondition) are in
// resource_api.h.

class ClaimBinder {
 public:
  ClaimBinder(kube::KubeClient* kube, ResourceApi* api, PoolManager* manager, const Clock* clock)
      : kube_(kube), api_(api), manager_(manager), clock_(clock) {}

  // How old a grant must be before a claim missing from `claims` takes it
  // back.
  static constexpr absl::Duration kGoneGrace = absl::Minutes(1);

  // One pass over `claims` (every ResourceClaim, as an informer's cache
  // holds them; v1 only: OK and nothing done on a cluster serving v1beta1).
  // Errors name the claim; the next pass retries.
  absl::Status Sync(const std::map<std::string, nlohmann::json>& claims);

 private:
  absl::Status Bind(const nlohmann::json& claim);
  absl::Status SetConditions(const nlohmann::json& claim, const std::vector<ClaimResult>& results, bool attached,
                             const std::string& message);

  kube::KubeClient* const kube_;
  ResourceApi* const api_;
  PoolManager* const manager_;
  const Clock* const clock_;
};

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_CLAIM_BINDER_H_
