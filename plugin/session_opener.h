#ifndef RPCI_PLUGIN_SESSION_OPENER_H_
#define RPCI_PLUGIN_SESSION_OPENER_H_

// What the plugin needs from memory-mirroring sessions: reserve one for a
// controller grant, check it is still live, close it. The workload attaches
// the data path itself (librpci / client::SessionClient::Attach) with what
// the plugin hands the container.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/rpci/v1/controller.pb.h"
#include "proto/rpci/v1/session.grpc.pb.h"

namespace rpci::plugin {

// One BAR as the session mirrors it.
struct BarWindow {
  uint32_t index = 0;
  uint64_t size = 0;
};

// A session reserved on an agent for one device, as the container will use it.
struct AttachedSession {
  std::string device_id;
  std::string grant_id;
  std::string session_id;       // 16 hex digits
  std::string endpoint;         // agent SessionControl gRPC target
  std::string fabric_provider;  // the agent's data-path provider
  std::string key;              // raw session key bytes (secret; goes to a 0600 file)
  std::vector<BarWindow> bars;
  uint64_t dma_size = 0;
  // PEM CA bundle the workload verifies the agent's TLS certificate against
  // (written to the session dir as ca.crt); empty when the agent speaks
  // plaintext.
  std::string ca_pem;
  // Device nodes the workload needs for the data path (the RDMA NIC's uverbs
  // device and rdma_cm with verbs); filled by the plugin, not the opener
  // (FabricDeviceNodes in container_edits.h).
  std::vector<std::string> device_nodes;
};

class SessionOpener {
 public:
  virtual ~SessionOpener() = default;

  // Reserves a session on the agent at `agent_endpoint` for `grant`. The
  // grant reaches the agent asynchronously after Claim, so implementations
  // retry a refused grant for a short while. Errors name the device.
  // Thread-safe.
  virtual absl::StatusOr<AttachedSession> Open(const rpci::v1::SessionGrant& grant,
                                               const std::string& agent_endpoint) = 0;
  // Ends the session; OK when it is already gone. Thread-safe.
  virtual absl::Status Close(const AttachedSession& session) = 0;
  // OK when the agent reports the session live; NOT_FOUND when the agent is
  // up but the session is gone; UNAVAILABLE when the agent cannot be reached.
  // Thread-safe.
  virtual absl::Status Check(const AttachedSession& session) = 0;
  // OK when the agent at `agent_endpoint` accepts connections within
  // `timeout`; UNAVAILABLE otherwise. Thread-safe.
  virtual absl::Status ProbeAgent(const std::string& agent_endpoint, absl::Duration timeout) = 0;
};

// The real opener: SessionControl gRPC on the agent.
class AgentSessionOpener final : public SessionOpener {
 public:
  // `creds` null means insecure (loopback tests). `grant_wait` bounds how long
  // a refused grant is retried.
  AgentSessionOpener(std::shared_ptr<grpc::ChannelCredentials> creds, std::string compute_node,
                     absl::Duration grant_wait = absl::Seconds(3));

  absl::StatusOr<AttachedSession> Open(const rpci::v1::SessionGrant& grant,
                                       const std::string& agent_endpoint) override;
  absl::Status Close(const AttachedSession& session) override;
  absl::Status Check(const AttachedSession& session) override;
  absl::Status ProbeAgent(const std::string& agent_endpoint, absl::Duration timeout) override;

 private:
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& endpoint);

  std::shared_ptr<grpc::ChannelCredentials> creds_;
  const std::string compute_node_;
  const absl::Duration grant_wait_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

// The session shape from an OpenSession answer: BAR windows and DMA size.
// INVALID_ARGUMENT when the answer names no region at all.
absl::Status FillShape(const rpci::v1::OpenSessionResponse& resp, AttachedSession* session);

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_SESSION_OPENER_H_
