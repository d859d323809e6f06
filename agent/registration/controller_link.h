#ifndef RPCI_AGENT_REGISTRATION_CONTROLLER_LINK_H_
#define RPCI_AGENT_REGISTRATION_CONTROLLER_LINK_H_

// The agent's side of the controller's AgentRegistry: register the exported
// devices, heartbeat their health, and keep the session-grant table in step
// with the controller's WatchGrants stream. Survives controller restarts and
// leader changes by re-registering.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agent/session/session_server.h"
#include "common/log.h"
#include "common/retry_loop.h"
#include "grpcpp/grpcpp.h"
#include "proto/rpci/v1/controller.grpc.pb.h"

namespace rpci::agent {

struct ControllerLinkOptions {
  std::string node;              // this device server's node name
  std::string session_endpoint;  // host:port of our SessionControl service
  std::string fabric_provider;
  RetryLoop::Options retry;
};

class ControllerLink {
 public:
  // What the agent exports now (called at every registration).
  using DeviceSource = std::function<std::vector<rpci::v1::ExportedDevice>()>;
  // Health of each exported device (called at every heartbeat).
  using HealthSource = std::function<std::vector<rpci::v1::DeviceHealthReport>()>;

  // Sessions to report (called at every heartbeat).
  using SessionSource = std::function<std::vector<rpci::v1::SessionReport>()>;

  // `grants` must outlive the link.
  ControllerLink(std::shared_ptr<grpc::Channel> channel, ControllerLinkOptions options, GrantTable* grants,
                 DeviceSource devices, HealthSource health, SessionSource sessions = nullptr);
  ~ControllerLink();

  void Start();
  void Stop();

  // True between a successful registration and the next failure.
  bool registered() const { return registered_; }
  // Registrations so far (a re-registration follows a controller restart).
  int registrations() const { return registrations_; }

 private:
  absl::Status RegisterAndWatch();
  absl::Status Heartbeat();
  void ApplyGrants(const rpci::v1::GrantUpdate& update, bool full_set);

  std::unique_ptr<rpci::v1::AgentRegistry::Stub> stub_;
  ControllerLinkOptions options_;
  GrantTable* grants_;
  DeviceSource devices_;
  HealthSource health_;
  SessionSource sessions_;
  Logger log_;
  RetryLoop watch_loop_;
  RetryLoop heartbeat_loop_;
  std::mutex mu_;
  std::set<std::string> known_grants_;     // guarded by mu_
  grpc::ClientContext* watch_ctx_ = nullptr;  // guarded by mu_
  std::atomic<bool> registered_{false};
  std::atomic<int> registrations_{0};
  std::atomic<int64_t> heartbeat_ms_{10000};
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_REGISTRATION_CONTROLLER_LINK_H_
