#include "agent/registration/controller_link.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"

namespace rpci::agent {
namespace {

Grant GrantOf(const rpci::v1::SessionGrant& g) {
  Grant grant;
  grant.grant_id = g.grant_id();
  grant.device_id = g.device_id();
  grant.compute_node = g.compute_node();
  grant.token = g.token();
  if (g.expires_unix_seconds() > 0) grant.expires = absl::FromUnixSeconds(g.expires_unix_seconds());
  return grant;
}

}  // namespace

ControllerLink::ControllerLink(std::shared_ptr<grpc::Channel> channel, ControllerLinkOptions options,
                               GrantTable* grants, DeviceSource devices, HealthSource health,
                               SessionSource sessions)
    : stub_(rpci::v1::AgentRegistry::NewStub(channel)),
      options_(std::move(options)),
      grants_(grants),
      devices_(std::move(devices)),
      health_(std::move(health)),
      sessions_(std::move(sessions)),
      log_(Logger("agent.controller").With("node", options_.node)),
      watch_loop_("controller registration", options_.retry, log_),
      heartbeat_loop_("controller heartbeat", options_.retry, log_) {}

ControllerLink::~ControllerLink() { Stop(); }

void ControllerLink::Start() {
  watch_loop_.Start([this] { return RegisterAndWatch(); });
  heartbeat_loop_.Start([this] { return Heartbeat(); });
}

void ControllerLink::Stop() {
  watch_loop_.Stop();
  heartbeat_loop_.Stop();
}

absl::Status ControllerLink::RegisterAndWatch() {
  registered_ = false;
  rpci::v1::RegisterAgentRequest req;
  req.set_node(options_.node);
  req.set_session_endpoint(options_.session_endpoint);
  req.set_fabric_provider(options_.fabric_provider);
  for (auto& d : devices_()) *req.add_devices() = std::move(d);
  absl::StatusOr<rpci::v1::RegisterResponse> resp = UnaryCall(
      *stub_, &rpci::v1::AgentRegistry::Stub::RegisterAgent, req, absl::Seconds(5), "register with controller");
  if (!resp.ok()) return resp.status();
  if (resp->heartbeat_interval_seconds() > 0) heartbeat_ms_ = resp->heartbeat_interval_seconds() * 1000;
  registered_ = true;
  ++registrations_;
  log_.Info("registered with controller", {{"devices", req.devices_size()}});

  grpc::ClientContext ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    watch_ctx_ = &ctx;
  }
  watch_loop_.SetCancel([&ctx] { ctx.TryCancel(); });
  rpci::v1::WatchGrantsRequest watch;
  watch.set_node(options_.node);
  std::unique_ptr<grpc::ClientReader<rpci::v1::GrantUpdate>> reader;
  grpc::Status s;
  bool progressed = false;
  if (!watch_loop_.stopping()) {
    reader = stub_->WatchGrants(&ctx, watch);
    rpci::v1::GrantUpdate update;
    bool first = true;
    while (reader->Read(&update)) {
      ApplyGrants(update, first);
      first = false;
      progressed = true;
    }
    s = reader->Finish();
  }
  watch_loop_.SetCancel(nullptr);
  {
    std::lock_guard<std::mutex> lock(mu_);
    watch_ctx_ = nullptr;
  }
  registered_ = false;
  // A stream that delivered the full set and later broke is progress: retry
  // at once (the controller restarted or lost leadership).
  if (progressed && s.error_code() != grpc::StatusCode::OK) {
    log_.Warn("grant watch ended", {{"error", s.error_message()}});
    return absl::OkStatus();
  }
  return s.ok() ? absl::OkStatus() : FromGrpc(s, "watch grants");
}

void ControllerLink::ApplyGrants(const rpci::v1::GrantUpdate& update, bool full_set) {
  std::lock_guard<std::mutex> lock(mu_);
  if (full_set) {
    // The first message is every live grant: anything else we knew is gone.
    std::set<std::string> live;
    for (const auto& g : update.granted()) live.insert(g.grant_id());
    for (const auto& id : known_grants_) {
      if (live.count(id) == 0) grants_->Revoke(id);
    }
    known_grants_.clear();
  }
  for (const auto& g : update.granted()) {
    grants_->Upsert(GrantOf(g));
    known_grants_.insert(g.grant_id());
    log_.Info("session grant received", {{"grant", g.grant_id()}, {"device", g.device_id()},
                                          {"compute_node", g.compute_node()}});
  }
  for (const auto& id : update.revoked_grant_ids()) {
    grants_->Revoke(id);
    known_grants_.erase(id);
    log_.Info("session grant revoked", {{"grant", id}});
  }
  // After its grants are in: a recovered session's grant missing now has ended.
  if (full_set) grants_->MarkFullSetReceived();
}

absl::Status ControllerLink::Heartbeat() {
  if (!heartbeat_loop_.Sleep(absl::Milliseconds(heartbeat_ms_.load()))) return absl::OkStatus();
  if (!registered_) return absl::OkStatus();
  rpci::v1::AgentHeartbeatRequest req;
  req.set_node(options_.node);
  for (auto& h : health_()) *req.add_health() = std::move(h);
  if (sessions_) {
    for (auto& r : sessions_()) *req.add_sessions() = std::move(r);
  }
  absl::Status s =
      UnaryCall(*stub_, &rpci::v1::AgentRegistry::Stub::Heartbeat, req, absl::Seconds(5), "heartbeat").status();
  if (absl::IsNotFound(s)) {
    // The controller forgot us (restart, lease expiry): break the watch so
    // the registration loop registers again.
    log_.Warn("controller asks to re-register", {{"error", std::string(s.message())}});
    std::lock_guard<std::mutex> lock(mu_);
    if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
    return absl::OkStatus();
  }
  return s;
}

}  // namespace rpci::agent
