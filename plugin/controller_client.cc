#include "plugin/controller_client.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"

namespace rpci::plugin {
GrpcControllerClient::GrpcControllerClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(rpci::v1::NodeRegistry::NewStub(channel)) {}

GrpcControllerClient::~GrpcControllerClient() { Stop(); }

absl::StatusOr<rpci::v1::ClaimResponse> GrpcControllerClient::Claim(const rpci::v1::ClaimRequest& req) {
  return UnaryCall(*stub_, &rpci::v1::NodeRegistry::Stub::Claim, req, absl::Seconds(5),
                   absl::StrCat("device ", req.device_id(), ": claim from controller"));
}

absl::Status GrpcControllerClient::Release(const rpci::v1::ReleaseRequest& req) {
  return UnaryCall(*stub_, &rpci::v1::NodeRegistry::Stub::Release, req, absl::Seconds(5),
                   absl::StrCat("device ", req.device_id(), ": release to controller"))
      .status();
}

absl::Status GrpcControllerClient::ReportUsage(const rpci::v1::ReportUsageRequest& req) {
  return UnaryCall(*stub_, &rpci::v1::NodeRegistry::Stub::ReportUsage, req, absl::Seconds(5),
                   "report usage to controller")
      .status();
}

// PrepareClaim and UnprepareClaim wait 10 s: within the kubelet's 45 s for
// the whole NodePrepareResources.
absl::StatusOr<rpci::v1::PrepareClaimResponse> GrpcControllerClient::PrepareClaim(
    const rpci::v1::NodeClaimRequest& req) {
  return UnaryCall(*stub_, &rpci::v1::NodeRegistry::Stub::PrepareClaim, req, absl::Seconds(10),
                   absl::StrCat("claim ", req.claim_namespace(), "/", req.claim_name(), ": prepare at controller"));
}

absl::Status GrpcControllerClient::UnprepareClaim(const rpci::v1::NodeClaimRequest& req) {
  return UnaryCall(*stub_, &rpci::v1::NodeRegistry::Stub::UnprepareClaim, req, absl::Seconds(10),
                   absl::StrCat("claim ", req.claim_namespace(), "/", req.claim_name(), ": unprepare at controller"))
      .status();
}

void GrpcControllerClient::StartAssignmentWatch(const rpci::v1::RegisterNodeRequest& node,
                                                std::function<void(const rpci::v1::AssignmentSet&)> on_assignments) {
  watch_loop_.Start([this, node, cb = std::move(on_assignments)] { return RegisterAndWatch(node, cb); });
  heartbeat_loop_.Start([this, name = node.node()] { return Heartbeat(name); });
}

void GrpcControllerClient::Stop() {
  watch_loop_.Stop();
  heartbeat_loop_.Stop();
}

absl::Status GrpcControllerClient::RegisterAndWatch(const rpci::v1::RegisterNodeRequest& node,
                                                    const std::function<void(const rpci::v1::AssignmentSet&)>& cb) {
  absl::StatusOr<rpci::v1::RegisterResponse> reg = UnaryCall(
      *stub_, &rpci::v1::NodeRegistry::Stub::RegisterNode, node, absl::Seconds(5), "register node with controller");
  if (!reg.ok()) return reg.status();
  if (reg->heartbeat_interval_seconds() > 0) heartbeat_ms_ = reg->heartbeat_interval_seconds() * 1000;
  grpc::ClientContext ctx;
  watch_loop_.SetCancel([&ctx] { ctx.TryCancel(); });
  grpc::Status s;
  bool progressed = false;
  if (!watch_loop_.stopping()) {
    rpci::v1::WatchAssignmentsRequest req;
    req.set_node(node.node());
    auto reader = stub_->WatchAssignments(&ctx, req);
    rpci::v1::AssignmentSet set;
    while (reader->Read(&set)) {
      watching_ = true;
      progressed = true;
      cb(set);
    }
    watching_ = false;
    s = reader->Finish();
  }
  watch_loop_.SetCancel(nullptr);
  // A stream that delivered sets and later broke is progress: register again
  // at once (the controller restarted or lost leadership).
  if (progressed && !s.ok()) {
    log_.Warn("assignment watch ended", {{"error", s.error_message()}, {"code", s.error_code()}});
    return absl::OkStatus();
  }
  return s.ok() ? absl::OkStatus() : FromGrpc(s, "watch assignments");
}

absl::Status GrpcControllerClient::Heartbeat(const std::string& node) {
  if (!heartbeat_loop_.Sleep(absl::Milliseconds(heartbeat_ms_.load()))) return absl::OkStatus();
  rpci::v1::NodeHeartbeatRequest req;
  req.set_node(node);
  // NOT_FOUND: the controller forgot us (restart); the watch registers again
  // when its stream breaks.
  return UnaryCall(*stub_, &rpci::v1::NodeRegistry::Stub::Heartbeat, req, absl::Seconds(5), "heartbeat to controller")
      .status();
}

}  // namespace rpci::plugin
