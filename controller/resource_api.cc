#include "controller/resource_api.h"

#include "absl/strings/str_cat.h"

namespace rpci::controller {
namespace {

using nlohmann::json;

constexpr char kGroupPath[] = "/apis/resource.k8s.io";

std::string StrAt(const json& o, const char* key) {
  if (!o.is_object()) return "";
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

absl::StatusOr<std::vector<ClaimResult>> RpciResultsOf(const json& claim, const std::string& uid) {
  const json meta = claim.value("metadata", json::object());
  const std::string where = absl::StrCat("ResourceClaim ", StrAt(meta, "namespace"), "/", StrAt(meta, "name"));
  if (StrAt(meta, "uid") != uid) {
    return absl::FailedPreconditionError(absl::StrCat(where, " has uid \"", StrAt(meta, "uid"), "\", not \"", uid,
                                                      "\" (deleted and created again?)"));
  }
  const json status = claim.value("status", json::object());
  const json allocation = status.is_object() ? status.value("allocation", json()) : json();
  if (!allocation.is_object()) return absl::FailedPreconditionError(absl::StrCat(where, " is not allocated"));
  const json devices = allocation.value("devices", json::object());
  const json results = devices.is_object() ? devices.value("results", json::array()) : json::array();
  if (!results.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": status.allocation.devices.results is not a list"));
  }
  std::vector<ClaimResult> out;
  for (const json& r : results) {
    if (StrAt(r, "driver") != kDraDriver) continue;
    ClaimResult c{StrAt(r, "request"), StrAt(r, "pool"), StrAt(r, "device")};
    if (c.request.empty() || c.pool.empty() || c.device.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": an rpci.io allocation result lacks request, pool or device: ", r.dump()));
    }
    out.push_back(std::move(c));
  }
  if (out.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(where, " allocates no device of driver ", kDraDriver));
  }
  return out;
}

absl::StatusOr<std::string> ResourceApi::Version() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!version_.empty()) return version_;
  absl::StatusOr<json> group = kube_->Get(kGroupPath);
  if (!group.ok()) {
    if (group.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError("the API server does not serve resource.k8s.io (DRA needs Kubernetes 1.32 or later)");
    }
    return group.status();
  }
  bool v1 = false, v1beta1 = false;
  for (const json& v : group->value("versions", json::array())) {
    v1 |= StrAt(v, "version") == "v1";
    v1beta1 |= StrAt(v, "version") == "v1beta1";
  }
  if (!v1 && !v1beta1) {
    return absl::NotFoundError(
        absl::StrCat("resource.k8s.io serves neither v1 nor v1beta1: ", group->value("versions", json()).dump()));
  }
  version_ = v1 ? "v1" : "v1beta1";
  return version_;
}

absl::StatusOr<std::string> ResourceApi::Prefix() {
  absl::StatusOr<std::string> v = Version();
  if (!v.ok()) return v.status();
  return absl::StrCat(kGroupPath, "/", *v);
}

absl::StatusOr<std::vector<ClaimResult>> ResourceApi::ReadClaim(const std::string& ns, const std::string& name,
                                                                const std::string& uid) {
  absl::StatusOr<std::string> prefix = Prefix();
  if (!prefix.ok()) return prefix.status();
  absl::StatusOr<json> claim = kube_->Get(absl::StrCat(*prefix, "/namespaces/", ns, "/resourceclaims/", name));
  if (!claim.ok()) {
    if (claim.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("ResourceClaim ", ns, "/", name, " not found"));
    }
    return claim.status();
  }
  return RpciResultsOf(*claim, uid);
}

}  // namespace rpci::controller
