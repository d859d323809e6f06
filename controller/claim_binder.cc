#include "controller/claim_binder.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "controller/crd_codec.h"

namespace rpci::controller {
namespace {

using nlohmann::json;

// The rpci.io results whose device carries the Attached binding condition.
std::vector<json> BoundResults(const json& claim) {
  std::vector<json> out;
  const json& results = Member(Member(Member(Member(claim, "status"), "allocation"), "devices"), "results");
  if (!results.is_array()) return out;
  for (const json& r : results) {
    if (Str(r, "driver") != kDraDriverName || !Member(r, "bindingConditions").is_array()) continue;
    for (const json& c : r["bindingConditions"]) {
      if (c == kAttachedCondition) out.push_back(r);
    }
  }
  return out;
}

// The node the allocation binds to: its nodeSelector's single
// metadata.name (matchFields) or kubernetes.io/hostname (matchExpressions).
std::string BoundNode(const json& claim) {
  const json& terms = Member(Member(Member(Member(claim, "status"), "allocation"), "nodeSelector"), "nodeSelectorTerms");
  if (!terms.is_array() || terms.size() != 1) return "";
  for (const char* kind : {"matchFields", "matchExpressions"}) {
    const json& reqs = Member(terms[0], kind);
    if (!reqs.is_array()) continue;
    for (const json& r : reqs) {
      const std::string key = Str(r, "key");
      if ((key == "metadata.name" || key == "kubernetes.io/hostname") && Str(r, "operator") == "In" &&
          Member(r, "values").is_array() && r["values"].size() == 1 && r["values"][0].is_string()) {
        return r["values"][0];
      }
    }
  }
  return "";
}

// Whether the claim's status already reports `type` True for the result.
bool Reported(const json& claim, const json& result, const std::string& type) {
  const json& devices = Member(Member(claim, "status"), "devices");
  if (!devices.is_array()) return false;
  for (const json& d : devices) {
    if (Str(d, "driver") != Str(result, "driver") || Str(d, "pool") != Str(result, "pool") ||
        Str(d, "device") != Str(result, "device") || !Member(d, "conditions").is_array()) {
      continue;
    }
    for (const json& c : d["conditions"]) {
      if (Str(c, "type") == type && Str(c, "status") == "True") return true;
    }
  }
  return false;
}

}  // namespace

absl::Status ClaimBinder::Sync(const std::map<std::string, json>& claims) {
  absl::StatusOr<std::string> version = api_->Version();
  if (!version.ok()) return version.status();
  if (*version != "v1") return absl::OkStatus();
  std::set<std::string> live;
  absl::Status first_error;
  for (const auto& [key, claim] : claims) {
    live.insert(Str(Member(claim, "metadata"), "uid"));
    absl::Status s = Bind(claim);
    if (first_error.ok()) first_error = s;
  }
  // A grant younger than kGoneGrace may be for a claim `claims` does not
  // show yet (the informer lags the API): not judged by it.
  const absl::Time now = clock_->Now();
  for (const Attachment& a : manager_->Attachments()) {
    if (!a.ForClaim() || live.count(a.claim_uid) || a.created + kGoneGrace > now) continue;
    rpci::v1::NodeClaimRequest req;
    req.set_node(a.node);
    req.set_claim_namespace(a.claim_namespace);
    req.set_claim_name(a.claim_name);
    req.set_claim_uid(a.claim_uid);
    absl::Status s = manager_->UnprepareClaim(req);
    if (first_error.ok()) first_error = s;
  }
  return first_error;
}

absl::Status ClaimBinder::Bind(const json& claim) {
  std::vector<json> bound = BoundResults(claim);
  bool pending = false;
  for (const json& r : bound) {
    pending |= !Reported(claim, r, kAttachedCondition) && !Reported(claim, r, kAttachFailedCondition);
  }
  if (!pending) return absl::OkStatus();
  const json& meta = Member(claim, "metadata");
  rpci::v1::NodeClaimRequest req;
  req.set_node(BoundNode(claim));
  req.set_claim_namespace(Str(meta, "namespace"));
  req.set_claim_name(Str(meta, "name"));
  req.set_claim_uid(Str(meta, "uid"));
  absl::StatusOr<std::vector<ClaimResult>> results = RpciResultsOf(claim, req.claim_uid());
  if (!results.ok()) return results.status();
  std::vector<ClaimResult> attaching;
  for (const json& r : bound) attaching.push_back({Str(r, "request"), Str(r, "pool"), Str(r, "device")});
  if (req.node().empty()) {
    return SetConditions(claim, attaching, false, "the allocation names no single node (bindsToNode)");
  }
  absl::StatusOr<rpci::v1::PrepareClaimResponse> prepared = manager_->PrepareClaim(req, *results);
  if (prepared.ok()) return SetConditions(claim, attaching, true, absl::StrCat("granted to node ", req.node()));
  // The node's plugin may not have registered yet, or an agent is away:
  // try again on the next pass; a refusal of the device itself is final.
  if (prepared.status().code() != absl::StatusCode::kFailedPrecondition) return prepared.status();
  return SetConditions(claim, attaching, false, std::string(prepared.status().message()));
}

absl::Status ClaimBinder::SetConditions(const json& claim, const std::vector<ClaimResult>& results, bool attached,
                                        const std::string& message) {
  const json& meta = Member(claim, "metadata");
  const std::string path = absl::StrCat("/apis/resource.k8s.io/v1/namespaces/", Str(meta, "namespace"),
                                        "/resourceclaims/", Str(meta, "name"));
  const std::string now = FormatKubeTime(clock_->Now());
  absl::StatusOr<json> written = kube_->ReadModifyWrite(path, true, [&](json& o) {
    if (Str(Member(o, "metadata"), "uid") != Str(meta, "uid")) return false;  // another claim now
    json& devices = o["status"]["devices"];
    if (!devices.is_array()) devices = json::array();
    for (const ClaimResult& r : results) {
      json* entry = nullptr;
      for (json& d : devices) {
        if (Str(d, "driver") == kDraDriverName && Str(d, "pool") == r.pool && Str(d, "device") == r.device) entry = &d;
      }
      if (entry == nullptr) {
        devices.push_back({{"driver", kDraDriverName}, {"pool", r.pool}, {"device", r.device}});
        entry = &devices.back();
      }
      json& conditions = (*entry)["conditions"];
      if (!conditions.is_array()) conditions = json::array();
      const std::string type = attached ? kAttachedCondition : kAttachFailedCondition;
      json c = {{"type", type},
                {"status", "True"},
                {"reason", attached ? "Granted" : "Refused"},
                {"message", message},
                {"lastTransitionTime", now}};
      bool replaced = false;
      for (json& existing : conditions) {
        if (Str(existing, "type") == type) {
          existing = c;
          replaced = true;
        }
      }
      if (!replaced) conditions.push_back(std::move(c));
    }
    return true;
  });
  if (!written.ok()) {
    return absl::Status(written.status().code(),
                        absl::StrCat("ResourceClaim ", Str(meta, "namespace"), "/", Str(meta, "name"), ": ",
                                     written.status().message()));
  }
  return absl::OkStatus();
}

}  // namespace rpci::controller
