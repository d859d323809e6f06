#ifndef RPCI_COMMON_TLS_SETTINGS_H_
#define RPCI_COMMON_TLS_SETTINGS_H_

// How a daemon (agent, plugin, controller) authenticates, from its flags or
// config, and the gRPC credentials that follow. Fail closed: a daemon told
// nothing refuses to start; plaintext only when told `insecure`, with a
// warning at every start.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/tls_node_certificate.h"

namespace rpci {

struct TlsSettings {
  bool insecure = false;  // plaintext gRPC, no peer authentication (demo, trusted host)
  // Static PEM files (tools/certs, cert-manager): certificate, key, CA bundle.
  std::string cert_file, key_file, ca_file;
  // Or a node certificate from the controller (agents and plugins in a
  // cluster): NodeIdentity address, projected token, where to keep the
  // certificate; ca_file verifies the controller.
  std::string identity_address;
  std::string token_file;
  std::string cert_dir;
  // How often certificate files are re-read (renewals need no restart).
  absl::Duration reload_interval = absl::Seconds(10);
};

// INVALID_ARGUMENT unless the settings choose exactly one way: `insecure`,
// static files (cert, key and ca), or (when `node_identity` is allowed) a
// node certificate (identity address, token file, ca and cert dir). The
// message names the flags or config keys to set.
absl::Status ValidateTlsSettings(const TlsSettings& settings, bool node_identity);

// --insecure, --tls-cert, --tls-key, --tls-ca and, with `node_identity`,
// --identity-address, --token-file, --cert-dir. `holder` is the common name
// the certificate carries ("agent:<node>").
void AddTlsFlags(FlagSet& flags, TlsSettings* settings, const std::string& holder, bool node_identity);

// A daemon's credentials, made once at start.
class DaemonTls {
 public:
  // Who asks for a node certificate (role "agent" or "plugin").
  struct NodeIdentity {
    std::string role;
    std::string node;
    std::vector<std::string> ip_addresses;
  };

  // Validates, loads the files or gets the first node certificate (waiting
  // up to `first_deadline`) and starts its renewal. Insecure: warns. Errors
  // start with "tls: ".
  static absl::StatusOr<std::unique_ptr<DaemonTls>> Start(const TlsSettings& settings, const NodeIdentity& who,
                                                          const Logger& log,
                                                          absl::Duration first_deadline = absl::Minutes(2));

  bool insecure() const { return insecure_; }
  // Plaintext when insecure; otherwise TLS from the current files.
  std::shared_ptr<grpc::ServerCredentials> ServerCredentials(ClientCertPolicy policy) const;
  std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials() const { return channel_; }
  // The CA bundle (PEM) at start; empty when insecure.
  const std::string& ca_pem() const { return ca_pem_; }
  // Set only with a node certificate.
  const NodeCertificateRenewer* renewer() const { return renewer_.get(); }

 private:
  DaemonTls() = default;

  bool insecure_ = false;
  TlsFiles files_;
  absl::Duration reload_interval_;
  std::string ca_pem_;
  std::unique_ptr<NodeCertificateRenewer> renewer_;
  std::shared_ptr<grpc::ChannelCredentials> channel_;
};

}  // namespace rpci

#endif  // RPCI_COMMON_TLS_SETTINGS_H_
