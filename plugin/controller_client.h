#ifndef RPCI_PLUGIN_CONTROLLER_CLIENT_H_
#define RPCI_PLUGIN_CONTROLLER_CLIENT_H_

// The plugin's side of the controller's NodeRegistry: claims and releases on
// Allocate, usage reports, and the node's assignment stream (register, watch,
// heartbeat, reconnect).

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/retry_loop.h"
#include "grpcpp/grpcpp.h"
#include "proto/rpci/v1/controller.grpc.pb.h"

namespace rpci::plugin {

// What Allocate and the usage loop need from the controller.
class ControllerApi {
 public:
  virtual ~ControllerApi() = default;
  // FAILED_PRECONDITION / PERMISSION_DENIED / UNAVAILABLE as the controller
  // answers. Thread-safe.
  virtual absl::StatusOr<rpci::v1::ClaimResponse> Claim(const rpci::v1::ClaimRequest& req) = 0;
  // Idempotent. Thread-safe.
  virtual absl::Status Release(const rpci::v1::ReleaseRequest& req) = 0;
  virtual absl::Status ReportUsage(const rpci::v1::ReportUsageRequest& req) = 0;
};

// What the DRA driver needs from the controller: a claim's allocation turned
// into grants for this node, and given back (NodeRegistry.PrepareClaim /
// UnprepareClaim; both idempotent per claim uid).
class ClaimPreparer {
 public:
  virtual ~ClaimPreparer() = default;
  // The controller's status unchanged in code, the message naming the claim.
  // Thread-safe.
  virtual absl::StatusOr<rpci::v1::PrepareClaimResponse> PrepareClaim(const rpci::v1::NodeClaimRequest& req) = 0;
  virtual absl::Status UnprepareClaim(const rpci::v1::NodeClaimRequest& req) = 0;
};

// NodeRegistry over one gRPC channel.
class GrpcControllerClient final : public ControllerApi, public ClaimPreparer {
 public:
  explicit GrpcControllerClient(std::shared_ptr<grpc::Channel> channel);
  ~GrpcControllerClient() override;

  absl::StatusOr<rpci::v1::ClaimResponse> Claim(const rpci::v1::ClaimRequest& req) override;
  absl::Status Release(const rpci::v1::ReleaseRequest& req) override;
  absl::Status ReportUsage(const rpci::v1::ReportUsageRequest& req) override;
  absl::StatusOr<rpci::v1::PrepareClaimResponse> PrepareClaim(const rpci::v1::NodeClaimRequest& req) override;
  absl::Status UnprepareClaim(const rpci::v1::NodeClaimRequest& req) override;

  // Registers `node` with `pools`, then delivers the node's complete
  // assignment set to `on_assignments` on every change, from a background
  // thread, until Stop. Heartbeats at the interval the controller asks for;
  // re-registers and re-watches after any failure (backoff 100 ms .. 2 s).
  void StartAssignmentWatch(const rpci::v1::RegisterNodeRequest& node,
                            std::function<void(const rpci::v1::AssignmentSet&)> on_assignments);
  void Stop();
  // True while a watch stream is open.
  bool watching() const { return watching_; }

 private:
  // One RetryLoop attempt each: register then stream assignments; wait one
  // heartbeat interval then heartbeat.
  absl::Status RegisterAndWatch(const rpci::v1::RegisterNodeRequest& node,
                                const std::function<void(const rpci::v1::AssignmentSet&)>& cb);
  absl::Status Heartbeat(const std::string& node);

  std::unique_ptr<rpci::v1::NodeRegistry::Stub> stub_;
  Logger log_{"plugin.controller"};
  RetryLoop watch_loop_{"assignment watch", {}, log_};
  RetryLoop heartbeat_loop_{"heartbeat", {}, log_};
  std::atomic<int64_t> heartbeat_ms_{10000};  // as the controller asks at registration
  std::atomic<bool> watching_{false};
};

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_CONTROLLER_CLIENT_H_
