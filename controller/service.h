#ifndef RPCI_CONTROLLER_SERVICE_H_
#define RPCI_CONTROLLER_SERVICE_H_

#include <atomic>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "controller/pool_manager.h"
#include "grpcpp/grpcpp.h"
#include "proto/rpci/v1/controller.grpc.pb.h"

namespace rpci::controller {

// Decides who a caller is and whether it may speak for a node. The one place
// the peer identity comes from: with mTLS, the verified client certificate's
// common name ("agent:<node>", "plugin:<node>"); in insecure mode (demo,
// no certificates) the caller is trusted to be what the request says.
class PeerAuthorizer {
 public:
  explicit PeerAuthorizer(bool require_tls) : require_tls_(require_tls) {}

  // OK when the caller holds `role` for `node`; UNAUTHENTICATED without a
  // verified certificate, PERMISSION_DENIED for another role or node.
  grpc::Status Authorize(const grpc::ServerContext& context, const std::string& role, const std::string& node) const;

 private:
  bool require_tls_;
};

// Whether this controller may act (it is the leader). OK, or UNAVAILABLE
// naming the leader.
using LeaderCheck = std::function<absl::Status()>;

// Reads ResourceClaim namespace/name from the cluster and returns its
// allocation results for driver rpci.io, after checking its uid and that it
// is allocated for `node` (see resource_api.h). Null: DRA is off (no
// cluster to read claims from).
using ClaimReader = std::function<absl::StatusOr<std::vector<ClaimResult>>(
    const std::string& node, const std::string& ns, const std::string& name, const std::string& uid)>;

// AgentRegistry and NodeRegistry over one PoolManager.
class ControllerService {
 public:
  ControllerService(PoolManager* manager, PeerAuthorizer authorizer, LeaderCheck leader,
                    ClaimReader claims = nullptr);

  grpc::Service* agent_registry() { return &agents_; }
  grpc::Service* node_registry() { return &nodes_; }

  // Ends every open watch stream (before grpc::Server::Shutdown).
  void Shutdown() { stopping_ = true; }

 private:
  // A generated service whose calls this ControllerService answers, for
  // callers holding `role` ("agent" or "plugin") for the node they name.
  template <typename Generated>
  class Registry : public Generated {
   public:
    Registry(ControllerService* s, const char* role) : s_(s), role_(role) {}

   protected:
    grpc::Status Admit(const grpc::ServerContext& ctx, const std::string& node) const {
      return s_->Admit(ctx, role_, node);
    }
    ControllerService* const s_;
    const char* const role_;
  };
  class Agents : public Registry<rpci::v1::AgentRegistry::Service> {
   public:
    using Registry::Registry;
    grpc::Status RegisterAgent(grpc::ServerContext* ctx, const rpci::v1::RegisterAgentRequest* req,
                               rpci::v1::RegisterResponse* resp) override;
    grpc::Status Heartbeat(grpc::ServerContext* ctx, const rpci::v1::AgentHeartbeatRequest* req,
                           rpci::v1::AgentHeartbeatResponse* resp) override;
    grpc::Status WatchGrants(grpc::ServerContext* ctx, const rpci::v1::WatchGrantsRequest* req,
                             grpc::ServerWriter<rpci::v1::GrantUpdate>* writer) override;
  };
  class Nodes : public Registry<rpci::v1::NodeRegistry::Service> {
   public:
    using Registry::Registry;
    grpc::Status RegisterNode(grpc::ServerContext* ctx, const rpci::v1::RegisterNodeRequest* req,
                              rpci::v1::RegisterResponse* resp) override;
    grpc::Status Heartbeat(grpc::ServerContext* ctx, const rpci::v1::NodeHeartbeatRequest* req,
                           rpci::v1::NodeHeartbeatResponse* resp) override;
    grpc::Status WatchAssignments(grpc::ServerContext* ctx, const rpci::v1::WatchAssignmentsRequest* req,
                                  grpc::ServerWriter<rpci::v1::AssignmentSet>* writer) override;
    grpc::Status Claim(grpc::ServerContext* ctx, const rpci::v1::ClaimRequest* req,
                       rpci::v1::ClaimResponse* resp) override;
    grpc::Status Release(grpc::ServerContext* ctx, const rpci::v1::ReleaseRequest* req,
                         rpci::v1::ReleaseResponse* resp) override;
    grpc::Status ReportUsage(grpc::ServerContext* ctx, const rpci::v1::ReportUsageRequest* req,
                             rpci::v1::ReportUsageResponse* resp) override;
    grpc::Status PrepareClaim(grpc::ServerContext* ctx, const rpci::v1::NodeClaimRequest* req,
                              rpci::v1::PrepareClaimResponse* resp) override;
    grpc::Status UnprepareClaim(grpc::ServerContext* ctx, const rpci::v1::NodeClaimRequest* req,
                                rpci::v1::UnprepareClaimResponse* resp) override;
  };

  // The watch streams' one loop: until the call ends, this controller stops
  // leading (the leader check's status) or shuts down (UNAVAILABLE), fills an
  // update with `changes` (true when it holds something new since the last
  // call) and writes it (the first one always), then waits for the pool
  // manager's next change or kWatchPoll. OK when the peer went away.
  template <typename Update>
  grpc::Status Watch(grpc::ServerContext* ctx, grpc::ServerWriter<Update>* writer,
                     const std::function<bool(Update*)>& changes);
  // Authorization, then leadership.
  grpc::Status Admit(const grpc::ServerContext& ctx, const std::string& role, const std::string& node) const;
  bool Done(grpc::ServerContext* ctx) const { return stopping_ || ctx->IsCancelled(); }

  PoolManager* manager_;
  PeerAuthorizer authorizer_;
  LeaderCheck leader_;
  ClaimReader claims_;
  std::atomic<bool> stopping_{false};
  Agents agents_{this, "agent"};
  Nodes nodes_{this, "plugin"};
};

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_SERVICE_H_
