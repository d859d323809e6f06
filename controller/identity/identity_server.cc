#include "controller/identity/identity_server.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/grpcpp.h"

namespace rpci::controller::identity {

absl::StatusOr<std::unique_ptr<IdentityServer>> IdentityServer::Create(const IdentityOptions& options,
                                                                       kube::KubeClient* kube,
                                                                       MetricsRegistry* metrics) {
  if (kube == nullptr) {
    return absl::InvalidArgumentError(
        "--identity-listen: node certificates need TokenReview from the API server (--store=kube)");
  }
  if (options.ca_cert_file.empty() || options.ca_key_file.empty()) {
    return absl::InvalidArgumentError("--identity-listen: --identity-ca-cert and --identity-ca-key are required");
  }
  absl::StatusOr<CertAuthority> ca = CertAuthority::Load(options.ca_cert_file, options.ca_key_file);
  if (!ca.ok()) return absl::Status(ca.status().code(), absl::StrCat("--identity-ca: ", ca.status().message()));
  if (options.issue.service_accounts.empty()) {
    return absl::InvalidArgumentError("--identity-service-accounts: no role may get a node certificate");
  }
  if (!options.ca_bundle_configmap.empty() && options.ca_bundle_configmap.find('/') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--identity-ca-configmap: \"", options.ca_bundle_configmap,
                                                   "\" is not namespace/name"));
  }
  const std::string ca_pem = ca->ca_pem();
  return std::unique_ptr<IdentityServer>(new IdentityServer(
      options, kube, ca_pem, std::make_unique<NodeIdentityService>(*std::move(ca), kube, options.issue, metrics)));
}

IdentityServer::IdentityServer(IdentityOptions options, kube::KubeClient* kube, std::string ca_pem,
                               std::unique_ptr<NodeIdentityService> service)
    : options_(std::move(options)), kube_(kube), ca_pem_(std::move(ca_pem)), service_(std::move(service)) {}

absl::Status IdentityServer::PublishCaBundle() {
  if (options_.ca_bundle_configmap.empty()) return absl::OkStatus();
  std::pair<std::string, std::string> ns_name = absl::StrSplit(options_.ca_bundle_configmap, absl::MaxSplits('/', 1));
  const std::string collection = absl::StrCat("/api/v1/namespaces/", ns_name.first, "/configmaps");
  const std::string path = absl::StrCat(collection, "/", ns_name.second);
  absl::StatusOr<nlohmann::json> written = kube_->ReadModifyWrite(path, /*status=*/false, [&](nlohmann::json& cm) {
    if (cm.value("data", nlohmann::json::object()).value("ca.crt", "") == ca_pem_) return false;
    cm["data"]["ca.crt"] = ca_pem_;
    return true;
  });
  if (written.status().code() == absl::StatusCode::kNotFound) {
    written = kube_->Create(collection, {{"apiVersion", "v1"},
                                         {"kind", "ConfigMap"},
                                         {"metadata", {{"name", ns_name.second}, {"namespace", ns_name.first}}},
                                         {"data", {{"ca.crt", ca_pem_}}}});
  }
  if (!written.ok()) {
    return absl::Status(written.status().code(), absl::StrCat("publishing the CA bundle to ConfigMap ",
                                                              options_.ca_bundle_configmap, ": ",
                                                              written.status().message()));
  }
  return absl::OkStatus();
}

IdentityServer::~IdentityServer() { Stop(); }

absl::Status IdentityServer::Start(std::shared_ptr<grpc::ServerCredentials> credentials) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, std::move(credentials), &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("--identity-listen: cannot listen on ", options_.listen));
  }
  return absl::OkStatus();
}

void IdentityServer::Stop() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_.reset();
}

}  // namespace rpci::controller::identity
