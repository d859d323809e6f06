#ifndef RPCI_CONTROLLER_KUBE_STORE_H_
#define RPCI_CONTROLLER_KUBE_STORE_H_

#include <map>
#include <string>
#include <vector>

#include "common/clock.h"
#include "controller/kube/client.h"
#include "controller/model.h"
#include "controller/store.h"

namespace rpci::controller {

// The pool manager's state as rpci.io/v1alpha1 objects: PcieDevice
// (cluster-scoped) and DeviceAttachment in `attachment_namespace` (the
// install namespace: one that exists), with each grant's token in a Secret
// of the same name there. Spec is written with PUT on the object, status
// with PUT on /status, each a read-modify-write that retries on 409
// Conflict. Every object is written on its own: a refused one is named in
// the CommitOutcome and the others are written.
class KubeStore : public Store {
 public:
  KubeStore(kube::KubeClient* client, const Clock* clock, std::string attachment_namespace)
      : client_(client), clock_(clock), ns_(std::move(attachment_namespace)) {}

  absl::StatusOr<StoreSnapshot> Load() override;
  CommitOutcome Commit(const StoreBatch& batch) override;
  const std::string& attachment_namespace() const { return ns_; }

  static constexpr char kDevicesPath[] = "/apis/rpci.io/v1alpha1/pciedevices";
  static constexpr char kPoolsPath[] = "/apis/rpci.io/v1alpha1/devicepools";
  static constexpr char kAttachmentsPath[] = "/apis/rpci.io/v1alpha1/deviceattachments";
  static std::string AttachmentsIn(const std::string& ns);

 private:
  // Creates or updates the object; the stored object.
  absl::StatusOr<nlohmann::json> Put(const std::string& collection, const std::string& name,
                                     const nlohmann::json& desired);
  // The attachment, then its grant Secret (owned by it).
  absl::Status PutAttachment(const Attachment& a);
  absl::Status DeleteAttachment(const std::string& grant_id);
  // Grant tokens by Secret name, from the attachment namespace.
  absl::StatusOr<std::map<std::string, std::string>> LoadTokens();

  kube::KubeClient* client_;
  const Clock* clock_;
  const std::string ns_;
};

// The rpci demand of a Pod: empty unless it is Pending, unscheduled, and its
// PodScheduled condition is False/Unschedulable for lack of an rpci.io
// resource. One entry per pool it requests (container limits or requests).
std::vector<PodDemand> DemandOfPod(const nlohmann::json& pod);

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_KUBE_STORE_H_
