#include "controller/identity/identity_server.h"

#include "absl/strings/str_cat.h"
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
  return std::unique_ptr<IdentityServer>(new IdentityServer(
      options.listen, std::make_unique<NodeIdentityService>(*std::move(ca), kube, options.issue, metrics)));
}

IdentityServer::IdentityServer(std::string listen, std::unique_ptr<NodeIdentityService> service)
    : listen_(std::move(listen)), service_(std::move(service)) {}

IdentityServer::~IdentityServer() { Stop(); }

absl::Status IdentityServer::Start(std::shared_ptr<grpc::ServerCredentials> credentials) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen_, std::move(credentials), &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("--identity-listen: cannot listen on ", listen_));
  }
  return absl::OkStatus();
}

void IdentityServer::Stop() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_.reset();
}

}  // namespace rpci::controller::identity
