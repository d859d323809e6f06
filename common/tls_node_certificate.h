#ifndef RPCI_COMMON_TLS_NODE_CERTIFICATE_H_
#define RPCI_COMMON_TLS_NODE_CERTIFICATE_H_

// A node's mTLS certificate ("<role>:<node>") from the controller's
// NodeIdentity service (proto/rpci/v1/identity.proto), renewed before it
// expires. The node's key is made here and never leaves it; the caller proves
// who it is with its projected ServiceAccount token.

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/cert_authority.h"
#include "common/log.h"
#include "common/tls.h"

namespace rpci {

struct NodeCertificateOptions {
  std::string identity_address;  // controller NodeIdentity host:port
  std::string ca_file;           // CA bundle that verifies the controller
  std::string token_file;        // projected ServiceAccount token, re-read per request
  std::string role;              // "agent" or "plugin"
  std::string node;
  std::vector<std::string> ip_addresses;  // IP SANs asked for (the controller may refuse)
  std::string cert_dir;          // tls.crt, tls.key and ca.crt are kept here
  // Renew once this fraction of the certificate's lifetime has passed.
  double renew_fraction = 2.0 / 3.0;
  absl::Duration retry_interval = absl::Seconds(5);
  absl::Duration request_timeout = absl::Seconds(10);
};

// One request: a fresh key and CSR, the token, the controller's answer.
// Returns the key and certificate (ca_pem: the controller's CA). Errors name
// the cause: the token file, the controller's refusal (its gRPC status and
// message), an unreachable controller.
absl::StatusOr<TlsMaterial> RequestNodeCertificate(const NodeCertificateOptions& options);

// Keeps a valid node certificate in options.cert_dir: gets the first one in
// Start, then renews in the background at renew_fraction of each lifetime
// (retrying every retry_interval on failure, logging each failure), writing
// the files in place so credentials from MakeReloading*Credentials(files())
// use the new certificate on their next connection.
class NodeCertificateRenewer {
 public:
  // Fails at once when the controller refuses the first certificate
  // (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT: asking again
  // changes nothing), and when it cannot be had before `first_deadline`
  // (controller unreachable: the last error). Renewals retry on any error.
  static absl::StatusOr<std::unique_ptr<NodeCertificateRenewer>> Start(NodeCertificateOptions options,
                                                                       absl::Duration first_deadline,
                                                                       const Logger& log);
  ~NodeCertificateRenewer();
  NodeCertificateRenewer(const NodeCertificateRenewer&) = delete;
  NodeCertificateRenewer& operator=(const NodeCertificateRenewer&) = delete;

  TlsFiles files() const;
  // The certificate now on disk, and how many times it has been replaced.
  CertificateInfo current() const;
  int renewals() const;

 private:
  NodeCertificateRenewer(NodeCertificateOptions options, const Logger& log);
  absl::Status Renew();
  void Loop();

  const NodeCertificateOptions options_;
  const Logger log_;
  absl::Notification stop_;
  mutable std::mutex mu_;
  CertificateInfo current_;
  absl::Time issued_at_;
  int renewals_ = 0;
  std::thread thread_;
};

}  // namespace rpci

#endif  // RPCI_COMMON_TLS_NODE_CERTIFICATE_H_
