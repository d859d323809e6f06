#include "common/tls_settings.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace rpci {

absl::Status ValidateTlsSettings(const TlsSettings& s, bool node_identity) {
  const bool files = !s.cert_file.empty() || !s.key_file.empty();
  const bool identity = !s.identity_address.empty() || !s.token_file.empty() || !s.cert_dir.empty();
  if (s.insecure) {
    if (files || identity || !s.ca_file.empty()) {
      return absl::InvalidArgumentError("tls: insecure is set together with TLS files; choose one");
    }
    return absl::OkStatus();
  }
  if (files && identity) {
    return absl::InvalidArgumentError(
        "tls: both certificate files (tls-cert/tls-key) and a node certificate from the controller "
        "(identity-address/token-file/cert-dir) are set; choose one");
  }
  if (files) {
    if (s.cert_file.empty() || s.key_file.empty() || s.ca_file.empty()) {
      return absl::InvalidArgumentError("tls: cert, key and ca are all required once one is given");
    }
    return absl::OkStatus();
  }
  if (identity && node_identity) {
    if (s.identity_address.empty() || s.token_file.empty() || s.cert_dir.empty() || s.ca_file.empty()) {
      return absl::InvalidArgumentError(
          "tls: a node certificate needs identity-address, token-file, cert-dir and ca together");
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "tls: no TLS configured and insecure not set; refusing to run without peer authentication. Give "
      "tls-cert, tls-key and tls-ca",
      node_identity ? " (or identity-address, token-file, cert-dir and tls-ca)" : "",
      ", or set insecure to run in plaintext (demo on a trusted host only)"));
}

void AddTlsFlags(FlagSet& flags, TlsSettings* s, const std::string& holder, bool node_identity) {
  flags.Bool("insecure", &s->insecure,
             "plaintext gRPC without peer authentication (demo on a trusted host only; warned at every start)");
  flags.String("tls-cert", &s->cert_file, absl::StrCat("PEM certificate (common name \"", holder, "\")"));
  flags.String("tls-key", &s->key_file, "PEM private key");
  flags.String("tls-ca", &s->ca_file, "PEM CA bundle of rpci's components");
  if (!node_identity) return;
  flags.String("identity-address", &s->identity_address,
               "controller NodeIdentity host:port: get a short-lived node certificate from it (instead of "
               "--tls-cert/--tls-key)");
  flags.String("token-file", &s->token_file, "projected ServiceAccount token (audience rpci) shown to the controller");
  flags.String("cert-dir", &s->cert_dir, "directory where the node certificate and key are kept");
}

absl::StatusOr<std::unique_ptr<DaemonTls>> DaemonTls::Start(const TlsSettings& settings, const NodeIdentity& who,
                                                            const Logger& log, absl::Duration first_deadline) {
  const bool node_identity = !who.role.empty();
  if (absl::Status s = ValidateTlsSettings(settings, node_identity); !s.ok()) return s;
  std::unique_ptr<DaemonTls> tls(new DaemonTls());
  tls->reload_interval_ = settings.reload_interval;
  if (settings.insecure) {
    log.Warn("running WITHOUT TLS (insecure): plaintext gRPC, no peer authentication; any caller on the network "
             "may speak for any node");
    tls->insecure_ = true;
    tls->channel_ = grpc::InsecureChannelCredentials();
    return tls;
  }
  if (!settings.identity_address.empty()) {
    NodeCertificateOptions o;
    o.identity_address = settings.identity_address;
    o.ca_file = settings.ca_file;
    o.token_file = settings.token_file;
    o.role = who.role;
    o.node = who.node;
    o.ip_addresses = who.ip_addresses;
    o.cert_dir = settings.cert_dir;
    absl::StatusOr<std::unique_ptr<NodeCertificateRenewer>> r =
        NodeCertificateRenewer::Start(std::move(o), first_deadline, log);
    if (!r.ok()) return absl::Status(r.status().code(), absl::StrCat("tls: ", r.status().message()));
    tls->renewer_ = *std::move(r);
    tls->files_ = tls->renewer_->files();
  } else {
    tls->files_ = {settings.cert_file, settings.key_file, settings.ca_file};
  }
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(tls->files_);
  if (!material.ok()) {
    return absl::Status(material.status().code(), absl::StrCat("tls: ", material.status().message()));
  }
  tls->ca_pem_ = material->ca_pem;
  tls->channel_ = MakeReloadingChannelCredentials(tls->files_, tls->reload_interval_);
  log.Info("mTLS", {{"common_name", material->common_name},
                    {"node_certificate", tls->renewer_ != nullptr}});
  return tls;
}

std::shared_ptr<grpc::ServerCredentials> DaemonTls::ServerCredentials(ClientCertPolicy policy) const {
  if (insecure_) return grpc::InsecureServerCredentials();
  return MakeReloadingServerCredentials(files_, policy, reload_interval_);
}

}  // namespace rpci
