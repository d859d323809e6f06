#ifndef RPCI_CONTROLLER_IDENTITY_NODE_IDENTITY_SERVICE_H_
#define RPCI_CONTROLLER_IDENTITY_NODE_IDENTITY_SERVICE_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cert_authority.h"
#include "common/log.h"
#include "common/metrics.h"
#include "controller/kube/client.h"
#include "proto/rpci/v1/identity.grpc.pb.h"

namespace rpci::controller::identity {

struct NodeIdentityOptions {
  std::string audience = "rpci";
  // Which ServiceAccount ("<namespace>/<name>") may hold which role's
  // certificate: role -> account. A role missing here is never issued.
  std::map<std::string, std::string> service_accounts;
  absl::Duration lifetime = absl::Hours(24);
};

// Issues agents' and plugins' node certificates (proto/rpci/v1/identity.proto).
// A request gets "<role>:<node>" only when the API server authenticates its
// token (TokenReview, our audience), the token is the role's ServiceAccount's
// and is bound to a pod, and that pod (read from the API server, uid matching
// the token) runs on `node`. IP SANs are granted only for the pod's host or
// pod IPs. Only this service holds the CA key. Each refusal is logged (never
// the token) and counted in rpci_identity_requests_total{result}.
class NodeIdentityService final : public rpci::v1::NodeIdentity::Service {
 public:
  NodeIdentityService(CertAuthority ca, kube::KubeClient* kube, NodeIdentityOptions options,
                      MetricsRegistry* metrics);

  // The decision, without gRPC: the certificate, or UNAUTHENTICATED (token),
  // PERMISSION_DENIED (wrong account, pod or node, IP not the pod's),
  // INVALID_ARGUMENT (request), UNAVAILABLE (API server).
  absl::StatusOr<rpci::v1::IssueCertificateResponse> Issue(const rpci::v1::IssueCertificateRequest& request);

  grpc::Status IssueCertificate(grpc::ServerContext* context, const rpci::v1::IssueCertificateRequest* request,
                                rpci::v1::IssueCertificateResponse* response) override;

 private:
  // The pod's IPs once it is shown to be the token's and on `node`.
  absl::StatusOr<std::vector<std::string>> PodOnNode(const std::string& ns, const std::string& pod,
                                                     const std::string& pod_uid, const std::string& node);

  const CertAuthority ca_;
  kube::KubeClient* const kube_;
  const NodeIdentityOptions options_;
  MetricsRegistry* const metrics_;
  const Logger log_{"controller"};
};

}  // namespace rpci::controller::identity

#endif  // RPCI_CONTROLLER_IDENTITY_NODE_IDENTITY_SERVICE_H_
