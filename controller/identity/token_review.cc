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

// Fields by type: "" / false / {} when absent or of another type.
std::string StringAt(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

json ObjectAt(const json& object, const char* key) {
  if (!object.is_object()) return json::object();
  auto it = object.find(key);
  return it != object.end() && it->is_object() ? *it : json::object();
}

// extra values are string lists; the first entry, or "".
std::string Extra(const json& user, const std::string& key) {
  const json extra = ObjectAt(user, "extra");
  auto it = extra.find(key);
  if (it == extra.end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) return "";
  return (*it)[0].get<std::string>();
}

}  // namespace

absl::StatusOr<ReviewedToken> ReviewToken(kube::KubeClient& kube, const std::string& token,
                                          const std::string& audience) {
  const json review = {{"apiVersion", "authentication.k8s.io/v1"},
                       {"kind", "TokenReview"},
                       {"spec", {{"token", token}, {"audiences", json::array({audience})}}}};
  absl::StatusOr<json> answer = kube.Create(kReviewsPath, review);
  if (!answer.ok()) {
    // The controller's problem (RBAC, API server down), not the caller's:
    // UNAVAILABLE, so the node asks again instead of giving up.
    return absl::UnavailableError(absl::StrCat("TokenReview failed: ", answer.status().ToString()));
  }
  return ParseTokenReview(*answer, audience);
}

absl::StatusOr<ReviewedToken> ParseTokenReview(const json& answer, const std::string& audience) {
  const json status = ObjectAt(answer, "status");
  auto authenticated = status.find("authenticated");
  if (authenticated == status.end() || *authenticated != json(true)) {
    const std::string why = StringAt(status, "error");
    return absl::UnauthenticatedError(
        absl::StrCat("token not authenticated by the API server", why.empty() ? "" : ": ", why));
  }
  // An API server that ignores spec.audiences would accept any of the pod's
  // tokens; only a token for our audience counts.
  auto audiences = status.find("audiences");
  if (audiences == status.end() || !audiences->is_array() ||
      std::find(audiences->begin(), audiences->end(), json(audience)) == audiences->end()) {
    return absl::UnauthenticatedError(absl::StrCat("token is not for audience \"", audience, "\""));
  }
  const json user = ObjectAt(status, "user");
  const std::string username = StringAt(user, "username");
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
