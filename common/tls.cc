#include "common/tls.h"

#include <fstream>
#include <sstream>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace rpci {
namespace {

absl::StatusOr<std::string> ReadPemFile(const std::string& what, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat("TLS ", what, " file not set"));
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("TLS ", what, " file ", path, ": cannot open"));
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioDeleter> MemBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioDeleter>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

std::string CommonName(X509* cert) {
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  return cn;
}

// The CA bundle in `path`, checked to hold a PEM certificate.
absl::StatusOr<std::string> ReadCaFile(const std::string& path) {
  absl::StatusOr<std::string> ca = ReadPemFile("CA", path);
  if (!ca.ok()) return ca.status();
  std::unique_ptr<X509, X509Deleter> ca_cert(PEM_read_bio_X509(MemBio(*ca).get(), nullptr, nullptr, nullptr));
  if (!ca_cert) return absl::InvalidArgumentError(absl::StrCat("TLS CA file ", path, ": not a PEM certificate"));
  return ca;
}

}  // namespace

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files) {
  TlsMaterial tls;
  absl::StatusOr<std::string> cert = ReadPemFile("certificate", files.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPemFile("key", files.key_file);
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> ca = ReadCaFile(files.ca_file);
  if (!ca.ok()) return ca.status();

  std::unique_ptr<X509, X509Deleter> x509(
      PEM_read_bio_X509(MemBio(*cert).get(), nullptr, nullptr, nullptr));
  if (!x509) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate file ", files.cert_file, ": not a PEM certificate"));
  }
  std::unique_ptr<EVP_PKEY, PkeyDeleter> pkey(
      PEM_read_bio_PrivateKey(MemBio(*key).get(), nullptr, nullptr, nullptr));
  if (!pkey) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key file ", files.key_file, ": not a PEM private key"));
  }
  if (X509_check_private_key(x509.get(), pkey.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS key file ", files.key_file,
                                                   ": does not match certificate ", files.cert_file));
  }
  tls.cert_pem = *std::move(cert);
  tls.key_pem = *std::move(key);
  tls.ca_pem = *std::move(ca);
  tls.common_name = CommonName(x509.get());
  return tls;
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsMaterial& tls, ClientCertPolicy policy) {
  grpc::SslServerCredentialsOptions options(policy == ClientCertPolicy::kRequire
                                                ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                                : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = tls.ca_pem;
  options.pem_key_cert_pairs.push_back({tls.key_pem, tls.cert_pem});
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const TlsMaterial& tls) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = tls.ca_pem;
  options.pem_private_key = tls.key_pem;
  options.pem_cert_chain = tls.cert_pem;
  return grpc::SslCredentials(options);
}

namespace {

std::shared_ptr<grpc::experimental::CertificateProviderInterface> FileWatcher(const TlsFiles& files,
                                                                               absl::Duration refresh) {
  const auto seconds = static_cast<unsigned int>(std::max<int64_t>(1, absl::ToInt64Seconds(refresh)));
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(files.key_file, files.cert_file,
                                                                              files.ca_file, seconds);
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> MakeReloadingServerCredentials(const TlsFiles& files,
                                                                        ClientCertPolicy policy,
                                                                        absl::Duration refresh) {
  grpc::experimental::TlsServerCredentialsOptions options(FileWatcher(files, refresh));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(policy == ClientCertPolicy::kRequire
                                    ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MakeReloadingChannelCredentials(const TlsFiles& files,
                                                                          absl::Duration refresh) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(FileWatcher(files, refresh));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  return grpc::experimental::TlsCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCaOnlyChannelCredentials(const std::string& ca_file) {
  absl::StatusOr<std::string> ca = ReadCaFile(ca_file);
  if (!ca.ok()) return ca.status();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = *std::move(ca);
  return grpc::SslCredentials(options);
}

absl::StatusOr<PeerIdentity> ParsePeerIdentity(const std::string& common_name) {
  PeerIdentity id;
  size_t colon = common_name.find(':');
  id.role = common_name.substr(0, colon);
  if (colon != std::string::npos) id.node = common_name.substr(colon + 1);
  if (id.role.empty() || (colon != std::string::npos && id.node.empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer certificate common name \"", common_name, "\" is not <role>[:<node>]"));
  }
  return id;
}

absl::StatusOr<PeerIdentity> GetPeerIdentity(const grpc::ServerContext& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("peer presented no verified client certificate");
  }
  std::vector<grpc::string_ref> cn = auth->FindPropertyValues("x509_common_name");
  if (cn.empty()) return absl::UnauthenticatedError("peer certificate has no common name");
  return ParsePeerIdentity(std::string(cn[0].data(), cn[0].size()));
}

}  // namespace rpci
