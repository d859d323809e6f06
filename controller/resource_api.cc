#include "controller/resource_api.h"

#include "absl/strings/str_cat.h"
#include "controller/crd_codec.h"

namespace rpci::controller {
namespace {

using nlohmann::json;

constexpr char kGroupPath[] = "/apis/resource.k8s.io";

}  // namespace

absl::StatusOr<std::vector<ClaimResult>> RpciResultsOf(const json& claim, const std::string& uid) {
  const json meta = claim.value("metadata", json::object());
  const std::string where = absl::StrCat("ResourceClaim ", Str(meta, "namespace"), "/", Str(meta, "name"));
  if (Str(meta, "uid") != uid) {
    return absl::FailedPreconditionError(absl::StrCat(where, " has uid \"", Str(meta, "uid"), "\", not \"", uid,
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
    if (Str(r, "driver") != kDraDriverName) continue;
    ClaimResult c{Str(r, "request"), Str(r, "pool"), Str(r, "device")};
    if (c.request.empty() || c.pool.empty() || c.device.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": an rpci.io allocation result lacks request, pool or device: ", r.dump()));
    }
    out.push_back(std::move(c));
  }
  if (out.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(where, " allocates no device of driver ", kDraDriverName));
  }
  return out;
}

std::set<std::pair<std::string, std::string>> RpciAllocations(const std::map<std::string, json>& claims) {
  std::set<std::pair<std::string, std::string>> out;
  for (const auto& [key, claim] : claims) {
    const json status = claim.value("status", json::object());
    const json allocation = status.is_object() ? status.value("allocation", json::object()) : json::object();
    const json devices = allocation.is_object() ? allocation.value("devices", json::object()) : json::object();
    const json results = devices.is_object() ? devices.value("results", json::array()) : json::array();
    if (!results.is_array()) continue;
    for (const json& r : results) {
      if (Str(r, "driver") == kDraDriverName) out.insert({Str(r, "pool"), Str(r, "device")});
    }
  }
  return out;
}

namespace {

// Whether every node-name requirement of `term` lists `node`.
bool TermAdmits(const json& term, const std::string& node) {
  for (const char* kind : {"matchFields", "matchExpressions"}) {
    const json reqs = term.is_object() ? term.value(kind, json::array()) : json::array();
    if (!reqs.is_array()) return false;
    for (const json& r : reqs) {
      const std::string key = Str(r, "key");
      if (key != "metadata.name" && key != "kubernetes.io/hostname") continue;
      const json values = r.is_object() ? r.value("values", json::array()) : json::array();
      if (Str(r, "operator") != "In" || !values.is_array()) return false;
      bool listed = false;
      for (const json& v : values) listed |= v.is_string() && v.get<std::string>() == node;
      if (!listed) return false;
    }
  }
  return true;
}

}  // namespace

absl::Status CheckAllocationNode(const json& claim, const std::string& node) {
  const json status = claim.value("status", json::object());
  const json allocation = status.is_object() ? status.value("allocation", json::object()) : json::object();
  const json selector = allocation.is_object() ? allocation.value("nodeSelector", json()) : json();
  if (selector.is_null()) return absl::OkStatus();
  const json terms = selector.is_object() ? selector.value("nodeSelectorTerms", json::array()) : json::array();
  if (terms.is_array()) {
    for (const json& t : terms) {
      if (TermAdmits(t, node)) return absl::OkStatus();
    }
  }
  const json meta = claim.value("metadata", json::object());
  return absl::PermissionDeniedError(absl::StrCat("ResourceClaim ", Str(meta, "namespace"), "/", Str(meta, "name"),
                                                  " is allocated for other nodes (", selector.dump(), "), not ", node));
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
    v1 |= Str(v, "version") == "v1";
    v1beta1 |= Str(v, "version") == "v1beta1";
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

absl::StatusOr<std::vector<ClaimResult>> ResourceApi::ReadClaim(const std::string& node, const std::string& ns,
                                                                const std::string& name, const std::string& uid) {
  absl::StatusOr<std::string> prefix = Prefix();
  if (!prefix.ok()) return prefix.status();
  absl::StatusOr<json> claim = kube_->Get(absl::StrCat(*prefix, "/namespaces/", ns, "/resourceclaims/", name));
  if (!claim.ok()) {
    if (claim.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("ResourceClaim ", ns, "/", name, " not found"));
    }
    return claim.status();
  }
  absl::StatusOr<std::vector<ClaimResult>> results = RpciResultsOf(*claim, uid);
  if (!results.ok()) return results.status();
  if (absl::Status s = CheckAllocationNode(*claim, node); !s.ok()) return s;
  return results;
}

}  // namespace rpci::controller
