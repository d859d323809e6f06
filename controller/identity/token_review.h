#ifndef RPCI_CONTROLLER_IDENTITY_TOKEN_REVIEW_H_
#define RPCI_CONTROLLER_IDENTITY_TOKEN_REVIEW_H_

#include <string>

#include "absl/status/statusor.h"
#include "controller/kube/client.h"

namespace rpci::controller::identity {

// Who a projected ServiceAccount token belongs to, as the API server says.
struct ReviewedToken {
  std::string ns;               // ServiceAccount namespace
  std::string service_account;  // ServiceAccount name
  // The pod the token is bound to (status.user.extra, bound tokens only).
  std::string pod_name;
  std::string pod_uid;
  std::string node_name;  // empty when the API server does not say (before k8s 1.30)
};

// Asks the API server (POST authentication.k8s.io/v1 TokenReview with
// spec.audiences [audience]) whether `token` is valid. UNAUTHENTICATED with
// the server's status.error when it is not (forged, expired, another
// audience, deleted pod), or when it is no ServiceAccount's token;
// UNAVAILABLE when the review itself fails (API server unreachable, our RBAC
// forbids it), naming the cause. The token is never logged or returned.
absl::StatusOr<ReviewedToken> ReviewToken(kube::KubeClient& kube, const std::string& token,
                                          const std::string& audience);

// The decision in a TokenReview answer, as ReviewToken reads it; any JSON
// (missing fields, wrong types) gives a status, never a crash.
absl::StatusOr<ReviewedToken> ParseTokenReview(const nlohmann::json& answer, const std::string& audience);

}  // namespace rpci::controller::identity

#endif  // RPCI_CONTROLLER_IDENTITY_TOKEN_REVIEW_H_
