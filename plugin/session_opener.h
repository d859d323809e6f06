#ifndef RPCI_PLUGIN_SESSION_OPENER_H_
#define RPCI_PLUGIN_SESSION_OPENER_H_

// What the plugin needs from memory-mirroring sessions: reserve one for a
// controller grant, check it is still live, close it. The workload attaches
// the data path itself (librpci / client::SessionClient::Attach) with what
// the plugin hands the container. The real implementation is a thin layer
// over client::ControlClient, the one client of the agent's SessionControl.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/control_client.h"
#include "grpcpp/grpcpp.h"
#include "proto/rpci/v1/controller.pb.h"

namespace rpci::plugin {

// A session reserved on an agent for one device, as the container will use it.
struct AttachedSession {
  std::string device_id;
  std::string grant_id;
  client::SessionTicket ticket;  // its key goes only to a 0600 file
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

// The real opener: SessionControl gRPC on the agent through ControlClient.
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
  client::ControlClient control_;
  const std::string compute_node_;
};

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_SESSION_OPENER_H_
