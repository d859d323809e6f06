#ifndef RPCI_CONTROLLER_KUBE_STORE_H_
#define RPCI_CONTROLLER_KUBE_STORE_H_

#include <string>
#include <vector>

#include "common/clock.h"
#include "controller/kube/client.h"
#include "controller/model.h"
#include "controller/store.h"

namespace rpci::controller {

// The pool manager's state as rpci.io/v1alpha1 objects: PcieDevice
// (cluster-scoped) and DeviceAttachment (in the pod's namespace). Spec is
// written with PUT on the object, status with PUT on /status, each a
// read-modify-write that retries on 409 Conflict.
class KubeStore : public Store {
 public:
  KubeStore(kube::KubeClient* client, const Clock* clock) : client_(client), clock_(clock) {}

  absl::StatusOr<StoreSnapshot> Load() override;
  absl::Status Commit(const StoreBatch& batch) override;

  static constexpr char kDevicesPath[] = "/apis/rpci.io/v1alpha1/pciedevices";
  static constexpr char kPoolsPath[] = "/apis/rpci.io/v1alpha1/devicepools";
  static constexpr char kAttachmentsPath[] = "/apis/rpci.io/v1alpha1/deviceattachments";
  static std::string AttachmentsIn(const std::string& ns);

 private:
  absl::Status Put(const std::string& collection, const std::string& name, const nlohmann::json& desired);

  kube::KubeClient* client_;
  const Clock* clock_;
};

// The rpci demand of a Pod: empty unless it is Pending, unscheduled, and its
// PodScheduled condition is False/Unschedulable for lack of an rpci.io
// resource. One entry per pool it requests (container limits or requests).
std::vector<PodDemand> DemandOfPod(const nlohmann::json& pod);

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_KUBE_STORE_H_
