#include "controller/identity/token_review.h"

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rpci::controller::identity {
namespace {

using nlohmann::json;

constexpr char kReviewsPath[] = "/apis/authentication.k8s.io/v1/tokenreviews";
constexpr char kServiceAccountPrefix[] = "system:serviceaccount:";

// extra values are string lists; the first entry, or "".
std::string Extra(const json& user, const std::string& key) {
  const json extra = user.value("extra", json::object());
  if (!extra.is_object() || !extra.contains(key) || !extra[key].is_array() || extra[key].empty() ||
      !extra[key][0].is_string()) {
    return "";
  }
  return extra[key][0].get<std::string>();
}

}  // namespace

absl::StatusOr<ReviewedToken> ReviewToken(kube::KubeClient& kube, const std::string& token,
                                          const std::string& audience) {
  const json review = {{"apiVersion", "authentication.k8s.io/v1"},
                       {"kind", "TokenReview"},
                       {"spec", {{"token", token}, {"audiences", json::array({audience})}}}};
  absl::StatusOr<json> answer = kube.Create(kReviewsPath, review);
  if (!answer.ok()) {
    return absl::Status(answer.status().code(), absl::StrCat("TokenReview failed: ", answer.status().message()));
  }
  const json status = answer->value("status", json::object());
  if (!status.is_object() || !status.value("authenticated", false)) {
    const std::string why = status.is_object() ? status.value("error", "") : "";
    return absl::UnauthenticatedError(
        absl::StrCat("token not authenticated by the API server", why.empty() ? "" : ": ", why));
  }
  // An API server that ignores spec.audiences would accept any of the pod's
  // tokens; only a token for our audience counts.
  const json audiences = status.value("audiences", json::array());
  if (!audiences.is_array() || std::find(audiences.begin(), audiences.end(), json(audience)) == audiences.end()) {
    return absl::UnauthenticatedError(absl::StrCat("token is not for audience \"", audience, "\""));
  }
  const json user = status.value("user", json::object());
  const std::string username = user.is_object() ? user.value("username", "") : "";
  std::vector<std::string> parts = absl::StrSplit(username, ':');
  if (!absl::StartsWith(username, kServiceAccountPrefix) || parts.size() != 4 || parts[2].empty() ||
      parts[3].empty()) {
    return absl::UnauthenticatedError(absl::StrCat("token of \"", username, "\" is not a ServiceAccount's"));
  }
  ReviewedToken t;
  t.ns = parts[2];
  t.service_account = parts[3];
  t.pod_name = Extra(user, "authentication.kubernetes.io/pod-name");
  t.pod_uid = Extra(user, "authentication.kubernetes.io/pod-uid");
  t.node_name = Extra(user, "authentication.kubernetes.io/node-name");
  return t;
}

}  // namespace rpci::controller::identity
