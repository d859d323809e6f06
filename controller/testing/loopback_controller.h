#ifndef RPCI_CONTROLLER_TESTING_LOOPBACK_CONTROLLER_H_
#define RPCI_CONTROLLER_TESTING_LOOPBACK_CONTROLLER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/clock.h"
#include "controller/local_store.h"
#include "controller/pool_manager.h"
#include "controller/service.h"
#include "grpcpp/grpcpp.h"

namespace rpci::controller::testing {

// The real controller on loopback for the agent's and the plugin's tests: a
// pool manager on a local store in `dir`, loaded as a controller taking over
// loads it, behind the agent and node registries, insecure (callers are
// trusted to name their node). `port` 0 picks a free one; a test restarts the
// controller by destroying it and making another on the old port() and dir.
class LoopbackController {
 public:
  explicit LoopbackController(const std::string& dir, int64_t spares_per_node = 0, int port = 0) {
    absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(dir, Clock::Real());
    if (!store.ok()) {
      status_ = store.status();
      return;
    }
    store_ = *std::move(store);
    PoolManager::Options options;
    options.default_pool.spares_per_node = spares_per_node;
    manager_ = std::make_unique<PoolManager>(store_.get(), Clock::Real(), options);
    if (status_ = manager_->Load(); !status_.ok()) return;
    service_ = std::make_unique<ControllerService>(manager_.get(), PeerAuthorizer(false),
                                                   [] { return absl::OkStatus(); });
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_->agent_registry());
    builder.RegisterService(service_->node_registry());
    server_ = builder.BuildAndStart();
    if (server_ == nullptr) status_ = absl::UnavailableError("controller: no server on port " + std::to_string(port));
  }
  ~LoopbackController() {
    if (service_) service_->Shutdown();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  LoopbackController(const LoopbackController&) = delete;
  LoopbackController& operator=(const LoopbackController&) = delete;

  // OK once serving; otherwise why not (store, load or port).
  const absl::Status& status() const { return status_; }
  int port() const { return port_; }
  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
  }
  PoolManager& manager() { return *manager_; }

 private:
  absl::Status status_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<PoolManager> manager_;
  std::unique_ptr<ControllerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace rpci::controller::testing

#endif  // RPCI_CONTROLLER_TESTING_LOOPBACK_CONTROLLER_H_
