#ifndef RPCI_PLUGIN_TESTING_CLAIM_CONTROLLER_H_
#define RPCI_PLUGIN_TESTING_CLAIM_CONTROLLER_H_

// The controller's DRA calls as the plugin reaches them: NodeRegistry's
// PrepareClaim / UnprepareClaim over loopback gRPC, answering from claim
// allocations a test sets (what the scheduler wrote into each
// ResourceClaim's status). It keeps the contract of proto/rpci/v1/
// controller.proto: idempotent per claim uid (the same grants again),
// NOT_FOUND for a claim with no allocation, PERMISSION_DENIED for a claim
// allocated to another node, unpreparing an unknown claim is OK. Until the
// real controller's DRA side is in main, the plugin's DRA tests run against
// this double; the real one replaces it in tests/e2e.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "proto/rpci/v1/controller.grpc.pb.h"

namespace rpci::plugin::testing {

class ClaimController final : public rpci::v1::NodeRegistry::Service {
 public:
  ClaimController() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~ClaimController() override { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1)); }

  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
  }

  // The claim `uid` is allocated `devices` (pool, device) on `node`, served
  // by the agent at `agent`.
  void Allocate(const std::string& uid, const std::string& node, const std::string& agent,
                const std::vector<std::pair<std::string, std::string>>& devices) {
    std::lock_guard<std::mutex> lock(mu_);
    Claim& c = claims_[uid];
    c.node = node;
    c.devices.clear();
    for (const auto& [pool, device] : devices) {
      rpci::v1::PreparedDevice d;
      d.set_request("remote");
      d.set_pool(pool);
      d.set_device(device);
      d.set_agent_session_endpoint(agent);
      d.mutable_exported()->set_id(device);
      d.mutable_exported()->set_pool(pool);
      c.devices.push_back(d);
    }
  }

  // While set, both calls answer UNAVAILABLE (the controller unreachable).
  void SetUnavailable(bool down) {
    std::lock_guard<std::mutex> lock(mu_);
    unavailable_ = down;
  }

  int prepares() const { std::lock_guard<std::mutex> lock(mu_); return prepares_; }
  int unprepares() const { std::lock_guard<std::mutex> lock(mu_); return unprepares_; }
  // Devices currently granted, all claims.
  int granted() const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& [uid, c] : claims_) n += c.granted ? static_cast<int>(c.devices.size()) : 0;
    return n;
  }

  grpc::Status PrepareClaim(grpc::ServerContext*, const rpci::v1::NodeClaimRequest* req,
                            rpci::v1::PrepareClaimResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (unavailable_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused");
    ++prepares_;
    auto it = claims_.find(req->claim_uid());
    if (it == claims_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("resourceclaim ", req->claim_namespace(), "/",
                                                                    req->claim_name(), " has no allocation"));
    }
    Claim& c = it->second;
    if (c.node != req->node()) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "claim is allocated to node " + c.node);
    }
    if (!c.granted) {
      // Fresh grants each time the claim is prepared after an unprepare.
      for (rpci::v1::PreparedDevice& d : c.devices) {
        d.mutable_grant()->set_device_id(d.device());
        d.mutable_grant()->set_grant_id(absl::StrCat("g-", ++next_grant_));
        d.mutable_grant()->set_token(absl::StrCat("token-", next_grant_));
      }
      c.granted = true;
    }
    for (const rpci::v1::PreparedDevice& d : c.devices) *resp->add_devices() = d;
    return grpc::Status::OK;
  }

  grpc::Status UnprepareClaim(grpc::ServerContext*, const rpci::v1::NodeClaimRequest* req,
                              rpci::v1::UnprepareClaimResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (unavailable_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused");
    ++unprepares_;
    if (auto it = claims_.find(req->claim_uid()); it != claims_.end()) it->second.granted = false;
    return grpc::Status::OK;
  }

 private:
  struct Claim {
    std::string node;
    std::vector<rpci::v1::PreparedDevice> devices;
    bool granted = false;
  };
  mutable std::mutex mu_;
  std::map<std::string, Claim> claims_;
  int prepares_ = 0, unprepares_ = 0, next_grant_ = 0;
  bool unavailable_ = false;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace rpci::plugin::testing

#endif  // RPCI_PLUGIN_TESTING_CLAIM_CONTROLLER_H_
