#include "controller/service.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/tls.h"

namespace rpci::controller {
namespace {

constexpr absl::Duration kWatchPoll = absl::Milliseconds(500);

}  // namespace

grpc::Status PeerAuthorizer::Authorize(const grpc::ServerContext& context, const std::string& role,
                                       const std::string& node) const {
  if (node.empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request names no node");
  if (!require_tls_) return grpc::Status::OK;
  absl::StatusOr<PeerIdentity> peer = GetPeerIdentity(context);
  if (!peer.ok()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(peer.status().message()));
  }
  if (peer->role != role || peer->node != node) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("peer ", peer->role, ":", peer->node, " may not act as ", role, ":", node));
  }
  return grpc::Status::OK;
}

ControllerService::ControllerService(PoolManager* manager, PeerAuthorizer authorizer, LeaderCheck leader,
                                     ClaimReader claims)
    : manager_(manager), authorizer_(authorizer), leader_(std::move(leader)), claims_(std::move(claims)) {}

grpc::Status ControllerService::Admit(const grpc::ServerContext& ctx, const std::string& role,
                                      const std::string& node) const {
  grpc::Status auth = authorizer_.Authorize(ctx, role, node);
  if (!auth.ok()) return auth;
  if (leader_) return ToGrpc(leader_());
  return grpc::Status::OK;
}

template <typename Update>
grpc::Status ControllerService::Watch(grpc::ServerContext* ctx, grpc::ServerWriter<Update>* writer,
                                      const std::function<bool(Update*)>& changes) {
  bool first = true;
  while (!Done(ctx)) {
    if (leader_) {
      if (absl::Status s = leader_(); !s.ok()) return ToGrpc(s);
    }
    const uint64_t seen = manager_->version();
    Update update;
    if (changes(&update) || first) {
      if (!writer->Write(update)) return grpc::Status::OK;  // the peer went away
      first = false;
    }
    manager_->WaitForChange(seen, kWatchPoll);
  }
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller shutting down");
}

// ---------------------------------------------------------------- agents

grpc::Status ControllerService::Agents::RegisterAgent(grpc::ServerContext* ctx,
                                                      const rpci::v1::RegisterAgentRequest* req,
                                                      rpci::v1::RegisterResponse* resp) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  return Reply(s_->manager_->RegisterAgent(*req), resp);
}

grpc::Status ControllerService::Agents::Heartbeat(grpc::ServerContext* ctx, const rpci::v1::AgentHeartbeatRequest* req,
                                                  rpci::v1::AgentHeartbeatResponse*) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  return ToGrpc(s_->manager_->AgentHeartbeat(*req));
}

grpc::Status ControllerService::Agents::WatchGrants(grpc::ServerContext* ctx, const rpci::v1::WatchGrantsRequest* req,
                                                    grpc::ServerWriter<rpci::v1::GrantUpdate>* writer) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  std::map<std::string, std::string> sent;  // grant id -> serialized grant
  return s_->Watch<rpci::v1::GrantUpdate>(ctx, writer, [&](rpci::v1::GrantUpdate* update) {
    std::map<std::string, std::string> now;
    for (const auto& g : s_->manager_->GrantsFor(req->node())) {
      std::string bytes = g.SerializeAsString();
      auto it = sent.find(g.grant_id());
      if (it == sent.end() || it->second != bytes) *update->add_granted() = g;
      now[g.grant_id()] = std::move(bytes);
    }
    for (const auto& [id, bytes] : sent) {
      if (!now.count(id)) update->add_revoked_grant_ids(id);
    }
    sent = std::move(now);
    return update->granted_size() > 0 || update->revoked_grant_ids_size() > 0;
  });
}

// ---------------------------------------------------------------- plugins

grpc::Status ControllerService::Nodes::RegisterNode(grpc::ServerContext* ctx, const rpci::v1::RegisterNodeRequest* req,
                                                    rpci::v1::RegisterResponse* resp) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  return Reply(s_->manager_->RegisterNode(*req), resp);
}

grpc::Status ControllerService::Nodes::Heartbeat(grpc::ServerContext* ctx, const rpci::v1::NodeHeartbeatRequest* req,
                                                 rpci::v1::NodeHeartbeatResponse*) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  return ToGrpc(s_->manager_->NodeHeartbeat(req->node()));
}

grpc::Status ControllerService::Nodes::WatchAssignments(grpc::ServerContext* ctx,
                                                        const rpci::v1::WatchAssignmentsRequest* req,
                                                        grpc::ServerWriter<rpci::v1::AssignmentSet>* writer) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  std::string last;  // the set last sent, serialized
  return s_->Watch<rpci::v1::AssignmentSet>(ctx, writer, [&](rpci::v1::AssignmentSet* set) {
    *set = s_->manager_->AssignmentsFor(req->node());
    std::string bytes = set->SerializeAsString();
    const bool changed = bytes != last;
    last = std::move(bytes);
    return changed;
  });
}

grpc::Status ControllerService::Nodes::Claim(grpc::ServerContext* ctx, const rpci::v1::ClaimRequest* req,
                                             rpci::v1::ClaimResponse* resp) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  return Reply(s_->manager_->Claim(*req), resp);
}

grpc::Status ControllerService::Nodes::Release(grpc::ServerContext* ctx, const rpci::v1::ReleaseRequest* req,
                                               rpci::v1::ReleaseResponse*) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  return ToGrpc(s_->manager_->Release(*req));
}

grpc::Status ControllerService::Nodes::ReportUsage(grpc::ServerContext* ctx, const rpci::v1::ReportUsageRequest* req,
                                                   rpci::v1::ReportUsageResponse*) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  return ToGrpc(s_->manager_->ReportUsage(*req));
}

grpc::Status ControllerService::Nodes::PrepareClaim(grpc::ServerContext* ctx, const rpci::v1::NodeClaimRequest* req,
                                                    rpci::v1::PrepareClaimResponse* resp) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  if (!s_->claims_) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "DRA needs the controller to read ResourceClaims: run it with --store=kube");
  }
  if (req->claim_namespace().empty() || req->claim_name().empty() || req->claim_uid().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "PrepareClaim: claim namespace, name and uid are required");
  }
  absl::StatusOr<std::vector<ClaimResult>> results =
      s_->claims_(req->node(), req->claim_namespace(), req->claim_name(), req->claim_uid());
  if (!results.ok()) return ToGrpc(results.status());
  return Reply(s_->manager_->PrepareClaim(*req, *results), resp);
}

grpc::Status ControllerService::Nodes::UnprepareClaim(grpc::ServerContext* ctx,
                                                      const rpci::v1::NodeClaimRequest* req,
                                                      rpci::v1::UnprepareClaimResponse*) {
  if (grpc::Status s = Admit(*ctx, req->node()); !s.ok()) return s;
  return ToGrpc(s_->manager_->UnprepareClaim(*req));
}

}  // namespace rpci::controller
