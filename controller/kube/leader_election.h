#ifndef RPCI_CONTROLLER_KUBE_LEADER_ELECTION_H_
#define RPCI_CONTROLLER_KUBE_LEADER_ELECTION_H_

#include <atomic>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"
#include "controller/kube/client.h"

namespace rpci::kube {

// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it:
// the holder renews spec.renewTime every retry period; others take over when
// the record has not changed for leaseDurationSeconds (measured on their own
// clock from when they last saw it change, so clock skew does not matter);
// writes are conditional on resourceVersion so only one contender wins.
class LeaderElector {
 public:
  struct Options {
    std::string ns = "default";
    std::string name = "rpci-controller";
    std::string identity;
    absl::Duration lease_duration = absl::Seconds(15);
    absl::Duration renew_deadline = absl::Seconds(10);
    absl::Duration retry_period = absl::Seconds(2);
  };
  LeaderElector(KubeClient* client, const Clock* clock, Options options);

  // One round: create, take over or renew the lease. Returns whether this
  // identity leads afterwards. A leader that cannot renew for renew_deadline
  // steps down.
  bool TryAcquireOrRenew();

  // Gives the lease up (holder cleared) if we hold it, so a standby takes
  // over at once.
  absl::Status Release();

  bool is_leader() const { return leader_; }
  // The current holder as last seen ("" when none).
  std::string holder() const;

 private:
  std::string LeasePath() const;

  KubeClient* client_;
  const Clock* clock_;
  const Options options_;
  Logger log_;
  std::atomic<bool> leader_{false};
  mutable std::mutex mu_;
  std::string holder_;
  std::string observed_record_;
  absl::Time observed_time_ = absl::InfinitePast();
  absl::Time last_renew_ = absl::InfinitePast();
};

}  // namespace rpci::kube

#endif  // RPCI_CONTROLLER_KUBE_LEADER_ELECTION_H_
