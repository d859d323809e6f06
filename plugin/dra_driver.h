#ifndef RPCI_PLUGIN_DRA_DRIVER_H_
#define RPCI_PLUGIN_DRA_DRIVER_H_

// The DRA driver's node side: what NodePrepareResources and
// NodeUnprepareResources do (the DRA endpoint, dra_endpoint.h, serves it to
// the kubelet). Preparing a claim asks the controller to turn the claim's
// allocation into grants for this node (PrepareClaim), reserves a mirroring
// session per device with its agent, writes each session dir and one CDI
// spec for the claim (kind rpci.io/claim, a device "<claim-uid>-<device>"
// per allocated device, the claim-wide env as spec edits) and answers the
// CDI ids. Unpreparing closes the sessions, gives the grants back
// (UnprepareClaim: the agent scrubs the device before it is offered again)
// and removes the files. Both are idempotent per claim uid and checkpointed
// (<state-dir>/dra-checkpoint.json): after a plugin restart a prepared claim
// is still prepared and preparing it again answers the same CDI ids.
// docs/dra.md.

#include <map>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/log.h"
#include "common/metrics.h"
#include "plugin/container_edits.h"
#include "plugin/controller_client.h"
#include "plugin/dra_endpoint.h"
#include "plugin/plugin.h"
#include "plugin/session_opener.h"

namespace rpci::plugin {

// The CDI kind of every claim's spec.
inline constexpr char kClaimCdiKind[] = "rpci.io/claim";

// "rpci.io/claim=<claim-uid>-<device>".
std::string ClaimCdiId(const std::string& claim_uid, const std::string& device);
// <cdi_dir>/rpci.io-claim-<claim-uid>.json
std::string ClaimCdiSpecPath(const std::string& cdi_dir, const std::string& claim_uid);
// <state_dir>/dra-checkpoint.json
std::string DraCheckpointPath(const std::string& state_dir);

// One prepared claim, as checkpointed.
struct PreparedClaim {
  struct Device {
    std::string request, pool, device;  // the allocation result
    AttachedSession session;            // key read back from the session dir
    SessionPaths paths;
    std::string cdi_id;
  };
  std::string claim_namespace, claim_name, uid;
  std::vector<Device> devices;
};

class DraDriver : private DraHandler {
 public:
  // Serves `options.dra_pools` (devices of other pools are refused);
  // `controller` and `sessions` must outlive the driver.
  DraDriver(PluginOptions options, ClaimPreparer* controller, SessionOpener* sessions);
  ~DraDriver() override;
  DraDriver(const DraDriver&) = delete;
  DraDriver& operator=(const DraDriver&) = delete;

  // Restores the checkpoint (a corrupt one is kept aside as
  // dra-checkpoint.json.corrupt and logged; the driver starts empty), then
  // serves the DRA endpoint. INVALID_ARGUMENT for bad options, UNAVAILABLE
  // when a socket cannot be served.
  absl::Status Start();
  // Stops serving. Prepared claims stay (sessions open, checkpoint kept).
  void Stop();

  // ---- observation ----
  // Uids of the prepared claims, sorted.
  std::vector<std::string> PreparedClaims() const;
  // Registrations the kubelet reported successful since Start.
  int registrations() const { return endpoint_->registrations(); }
  // Registrations the kubelet refused since Start.
  int registration_failures() const { return endpoint_->registration_failures(); }

 private:
  drapb::NodePrepareResourcesResponse Prepare(const drapb::NodePrepareResourcesRequest& req) override;
  drapb::NodeUnprepareResourcesResponse Unprepare(const drapb::NodeUnprepareResourcesRequest& req) override;

  // One claim: the recorded answer when prepared already (its CDI spec
  // written again if it is gone), else PrepareClaim, sessions, files,
  // checkpoint; on failure everything acquired is given back.
  absl::StatusOr<PreparedClaim> PrepareOne(const drapb::Claim& claim);
  // Reserves the session of one allocated device and writes its session dir.
  absl::Status OpenDevice(const rpci::v1::PreparedDevice& d, PreparedClaim& claim);
  // Writes the claim's CDI spec.
  absl::Status WriteClaimCdiSpec(const PreparedClaim& claim) const;
  // Closes the claim's sessions and removes its files (best effort, logged).
  void ReleaseSessions(const PreparedClaim& claim, const std::string& reason);
  absl::Status UnprepareOne(const drapb::Claim& claim);

  // Checkpoint: every prepared claim (no keys: they stay in the session
  // dirs). Save with mu_ held.
  absl::Status SaveCheckpoint() const;
  void LoadCheckpoint();

  const PluginOptions options_;
  ClaimPreparer* const controller_;
  SessionOpener* const sessions_;
  Logger log_{"plugin.dra"};
  std::unique_ptr<MetricsRegistry> own_metrics_;
  CounterFamily* prepares_;
  std::unique_ptr<DraEndpoint> endpoint_;

  // Holds claim `uid` for one operation: one claim's prepare and unprepare
  // never interleave; different claims proceed in parallel.
  class ClaimLock;

  mutable std::mutex mu_;
  std::condition_variable released_;               // a busy_ uid freed
  std::set<std::string> busy_;                     // uids in an operation; mu_
  std::map<std::string, PreparedClaim> prepared_;  // by uid; mu_
};

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_DRA_DRIVER_H_
