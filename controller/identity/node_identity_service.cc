#include "controller/identity/node_identity_service.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "controller/identity/token_review.h"

namespace rpci::controller::identity {
namespace {

using nlohmann::json;

// A Kubernetes node name (RFC 1123 subdomain): what may follow "<role>:".
bool ValidNodeName(const std::string& node) {
  if (node.empty() || node.size() > 253) return false;
  for (char c : node) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-' && c != '.') return false;
  }
  return absl::ascii_isalnum(node.front()) && absl::ascii_isalnum(node.back());
}

std::string Str(const json& object, const char* a, const char* b) {
  if (!object.is_object()) return "";
  auto outer = object.find(a);
  if (outer == object.end() || !outer->is_object()) return "";
  auto v = outer->find(b);
  return v != outer->end() && v->is_string() ? v->get<std::string>() : "";
}

const char* ResultOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return "issued";
    case absl::StatusCode::kUnauthenticated: return "bad_token";
    case absl::StatusCode::kPermissionDenied: return "denied";
    case absl::StatusCode::kInvalidArgument: return "bad_request";
    default: return "error";
  }
}

}  // namespace

NodeIdentityService::NodeIdentityService(CertAuthority ca, kube::KubeClient* kube, NodeIdentityOptions options,
                                         MetricsRegistry* metrics)
    : ca_(std::move(ca)), kube_(kube), options_(std::move(options)), metrics_(metrics) {}

absl::StatusOr<std::vector<std::string>> NodeIdentityService::PodOnNode(const std::string& ns,
                                                                        const std::string& pod,
                                                                        const std::string& pod_uid,
                                                                        const std::string& node) {
  absl::StatusOr<json> p = kube_->Get(absl::StrCat("/api/v1/namespaces/", ns, "/pods/", pod));
  if (!p.ok()) {
    if (p.status().code() == absl::StatusCode::kNotFound) {
      return absl::PermissionDeniedError(absl::StrCat("token's pod ", ns, "/", pod, " does not exist"));
    }
    return absl::UnavailableError(absl::StrCat("reading pod ", ns, "/", pod, ": ", p.status().message()));
  }
  if (!p->is_object()) return absl::UnavailableError(absl::StrCat("reading pod ", ns, "/", pod, ": not an object"));
  if (Str(*p, "metadata", "uid") != pod_uid) {
    return absl::PermissionDeniedError(
        absl::StrCat("pod ", ns, "/", pod, " is not the token's (uid differs: recreated since)"));
  }
  const std::string pod_node = Str(*p, "spec", "nodeName");
  if (pod_node != node) {
    return absl::PermissionDeniedError(absl::StrCat("token's pod ", ns, "/", pod, " runs on node \"", pod_node,
                                                    "\", not on \"", node, "\""));
  }
  std::vector<std::string> ips;
  if (std::string host_ip = Str(*p, "status", "hostIP"); !host_ip.empty()) ips.push_back(host_ip);
  const json* status = p->contains("status") ? &(*p)["status"] : nullptr;
  const json* pod_ips = status != nullptr && status->is_object() && status->contains("podIPs")
                            ? &(*status)["podIPs"]
                            : nullptr;
  if (pod_ips != nullptr && pod_ips->is_array()) {
    for (const json& ip : *pod_ips) {
      if (ip.is_object() && ip.contains("ip") && ip["ip"].is_string()) ips.push_back(ip["ip"].get<std::string>());
    }
  }
  return ips;
}

absl::StatusOr<rpci::v1::IssueCertificateResponse> NodeIdentityService::Issue(
    const rpci::v1::IssueCertificateRequest& req) {
  auto account = options_.service_accounts.find(req.role());
  if (account == options_.service_accounts.end()) {
    return absl::InvalidArgumentError(absl::StrCat("role \"", req.role(), "\" gets no node certificate"));
  }
  if (!ValidNodeName(req.node())) {
    return absl::InvalidArgumentError(absl::StrCat("node \"", req.node(), "\" is not a Kubernetes node name"));
  }
  if (req.token().empty()) return absl::UnauthenticatedError("no ServiceAccount token in the request");
  absl::StatusOr<ReviewedToken> token = ReviewToken(*kube_, req.token(), options_.audience);
  if (!token.ok()) return token.status();
  const std::string who = absl::StrCat(token->ns, "/", token->service_account);
  if (who != account->second) {
    return absl::PermissionDeniedError(absl::StrCat("token of ServiceAccount ", who, " may not hold a ", req.role(),
                                                    " certificate (only ", account->second, ")"));
  }
  if (token->pod_name.empty() || token->pod_uid.empty()) {
    return absl::PermissionDeniedError("token is not bound to a pod (use a projected ServiceAccount token)");
  }
  if (!token->node_name.empty() && token->node_name != req.node()) {
    return absl::PermissionDeniedError(absl::StrCat("token's pod ", token->ns, "/", token->pod_name,
                                                    " runs on node \"", token->node_name, "\", not on \"",
                                                    req.node(), "\""));
  }
  absl::StatusOr<std::vector<std::string>> pod_ips = PodOnNode(token->ns, token->pod_name, token->pod_uid, req.node());
  if (!pod_ips.ok()) return pod_ips.status();
  for (const std::string& ip : req.ip_addresses()) {
    if (std::find(pod_ips->begin(), pod_ips->end(), ip) == pod_ips->end()) {
      return absl::PermissionDeniedError(absl::StrCat("IP ", ip, " is not an address of pod ", token->ns, "/",
                                                      token->pod_name));
    }
  }
  const std::string common_name = absl::StrCat(req.role(), ":", req.node());
  std::vector<std::string> ips(req.ip_addresses().begin(), req.ip_addresses().end());
  absl::StatusOr<std::string> cert = ca_.SignRequest(req.csr_pem(), common_name, {req.node()}, ips, options_.lifetime);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<CertificateInfo> info = ReadCertificateInfo(*cert);
  if (!info.ok()) return absl::InternalError(absl::StrCat("signed certificate: ", info.status().message()));
  rpci::v1::IssueCertificateResponse resp;
  resp.set_certificate_pem(*std::move(cert));
  resp.set_ca_pem(ca_.ca_pem());
  resp.set_not_after_unix_seconds(absl::ToUnixSeconds(info->not_after));
  return resp;
}

grpc::Status NodeIdentityService::IssueCertificate(grpc::ServerContext* context,
                                                   const rpci::v1::IssueCertificateRequest* request,
                                                   rpci::v1::IssueCertificateResponse* response) {
  absl::StatusOr<rpci::v1::IssueCertificateResponse> r = Issue(*request);
  metrics_->AddCounter("rpci_identity_requests_total", "Node certificate requests, by result", {"result"})
      .Labels({ResultOf(r.status().code())})
      .Increment();
  const LogFields fields = {{"role", request->role()}, {"node", request->node()}, {"peer", context->peer()}};
  if (!r.ok()) {
    LogFields f = fields;
    f.emplace_back("error", r.status().ToString());
    log_.Warn("node certificate refused", f);
    return ToGrpc(r.status());
  }
  log_.Info("node certificate issued", fields);
  *response = *std::move(r);
  return grpc::Status::OK;
}

}  // namespace rpci::controller::identity
