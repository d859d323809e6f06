#include "plugin/controller_client.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "plugin/grpc_util.h"

namespace rpci::plugin {
GrpcControllerClient::GrpcControllerClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(rpci::v1::NodeRegistry::NewStub(channel)) {}

GrpcControllerClient::~GrpcControllerClient() { Stop(); }

absl::StatusOr<rpci::v1::ClaimResponse> GrpcControllerClient::Claim(const rpci::v1::ClaimRequest& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(5)));
  rpci::v1::ClaimResponse resp;
  grpc::Status s = stub_->Claim(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("device ", req.device_id(), ": claim from controller"));
  return resp;
}

absl::Status GrpcControllerClient::Release(const rpci::v1::ReleaseRequest& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(5)));
  rpci::v1::ReleaseResponse resp;
  grpc::Status s = stub_->Release(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("device ", req.device_id(), ": release to controller"));
  return absl::OkStatus();
}

absl::Status GrpcControllerClient::ReportUsage(const rpci::v1::ReportUsageRequest& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(5)));
  rpci::v1::ReportUsageResponse resp;
  grpc::Status s = stub_->ReportUsage(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s, "report usage to controller");
  return absl::OkStatus();
}

void GrpcControllerClient::StartAssignmentWatch(const rpci::v1::RegisterNodeRequest& node,
                                                std::function<void(const rpci::v1::AssignmentSet&)> on_assignments) {
  watch_thread_ = std::thread([this, node, cb = std::move(on_assignments)] { WatchLoop(node, cb); });
  heartbeat_thread_ = std::thread([this, name = node.node()] { HeartbeatLoop(name); });
}

void GrpcControllerClient::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (watch_ctx_) watch_ctx_->TryCancel();
  }
  cv_.notify_all();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

void GrpcControllerClient::WatchLoop(rpci::v1::RegisterNodeRequest node,
                                     std::function<void(const rpci::v1::AssignmentSet&)> cb) {
  absl::Duration backoff = absl::Milliseconds(100);
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    grpc::ClientContext reg_ctx;
    reg_ctx.set_deadline(In(absl::Seconds(5)));
    rpci::v1::RegisterNodeResponse reg;
    grpc::Status s = stub_->RegisterNode(&reg_ctx, node, &reg);
    if (s.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (reg.heartbeat_interval_seconds() > 0) heartbeat_ = absl::Seconds(reg.heartbeat_interval_seconds());
      }
      grpc::ClientContext ctx;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
        watch_ctx_ = &ctx;
      }
      rpci::v1::WatchAssignmentsRequest req;
      req.set_node(node.node());
      auto reader = stub_->WatchAssignments(&ctx, req);
      rpci::v1::AssignmentSet set;
      while (reader->Read(&set)) {
        watching_ = true;
        backoff = absl::Milliseconds(100);
        cb(set);
      }
      watching_ = false;
      s = reader->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      watch_ctx_ = nullptr;
    }
    if (!s.ok()) log_.Warn("assignment watch failed", {{"error", s.error_message()}, {"code", s.error_code()}});
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoMilliseconds(backoff), [&] { return stopping_; });
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

void GrpcControllerClient::HeartbeatLoop(std::string node) {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, absl::ToChronoMilliseconds(heartbeat_), [&] { return stopping_; });
    if (stopping_) return;
    lock.unlock();
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(5)));
    rpci::v1::NodeHeartbeatRequest req;
    req.set_node(node);
    rpci::v1::NodeHeartbeatResponse resp;
    grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
    // NOT_FOUND: the controller forgot us (restart); the watch loop
    // re-registers when its stream breaks, so just say so.
    if (!s.ok()) log_.Warn("heartbeat failed", {{"error", s.error_message()}});
    lock.lock();
  }
}

}  // namespace rpci::plugin
