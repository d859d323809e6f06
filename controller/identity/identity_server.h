#ifndef RPCI_CONTROLLER_IDENTITY_IDENTITY_SERVER_H_
#define RPCI_CONTROLLER_IDENTITY_IDENTITY_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controller/identity/node_identity_service.h"
#include "grpcpp/security/server_credentials.h"

namespace grpc {
class Server;
}

namespace rpci::controller::identity {

// rpci-controller's --identity-* flags.
struct IdentityOptions {
  std::string listen;  // host:port of NodeIdentity; empty: not served
  std::string ca_cert_file, ca_key_file;  // the CA (only the controller mounts its key)
  // "<namespace>/<name>" of a ConfigMap the controller keeps the CA
  // certificate in (key ca.crt), for nodes to verify the controller with
  // before they have a certificate. Empty: not published.
  std::string ca_bundle_configmap;
  NodeIdentityOptions issue;
};

// The NodeIdentity listener. Its own port, because a node asking for its
// first certificate has none to present: TLS with the controller's
// certificate, client certificates not required. The controller's other
// services keep requiring them.
class IdentityServer {
 public:
  // Loads the CA. INVALID_ARGUMENT without an API server (node certificates
  // need TokenReview: --store=kube) or for bad CA files.
  static absl::StatusOr<std::unique_ptr<IdentityServer>> Create(const IdentityOptions& options,
                                                                kube::KubeClient* kube, MetricsRegistry* metrics);
  ~IdentityServer();

  // Writes the CA certificate into options.ca_bundle_configmap (create or
  // update; nothing when unset). The API server's error otherwise.
  absl::Status PublishCaBundle();

  // UNAVAILABLE naming the address when it cannot be bound.
  absl::Status Start(std::shared_ptr<grpc::ServerCredentials> credentials);
  void Stop();
  int port() const { return port_; }

 private:
  IdentityServer(IdentityOptions options, kube::KubeClient* kube, std::string ca_pem,
                 std::unique_ptr<NodeIdentityService> service);

  const IdentityOptions options_;
  kube::KubeClient* const kube_;
  const std::string ca_pem_;
  std::unique_ptr<NodeIdentityService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace rpci::controller::identity

#endif  // RPCI_CONTROLLER_IDENTITY_IDENTITY_SERVER_H_
