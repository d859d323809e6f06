#include "common/cert_authority.h"

#include <sys/stat.h>

#include <fstream>
#include <memory>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rpci {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

absl::Status OpenSslError(const std::string& what) {
  return absl::InternalError(absl::StrCat("certificate authority: ", what, " failed"));
}

PkeyPtr NewKey() { return PkeyPtr(EVP_EC_gen("P-256")); }

std::string ToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, len);
}

std::string ToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, len);
}

bool AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key` named `cn`, not yet signed.
X509Ptr NewCert(EVP_PKEY* key, const std::string& cn, int days) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

absl::Status WriteFile(const std::string& path, const std::string& data, mode_t mode) {
  std::ofstream out(path, std::ios::trunc);
  out << data;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat(path, ": write failed"));
  chmod(path.c_str(), mode);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CertAuthority> CertAuthority::Create(const std::string& name, int days) {
  PkeyPtr key = NewKey();
  if (!key) return OpenSslError("CA key generation");
  X509Ptr cert = NewCert(key.get(), name, days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  if (!AddExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE") ||
      !AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !AddExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash")) {
    return OpenSslError("CA extensions");
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return OpenSslError("CA signing");
  CertAuthority ca;
  ca.ca_pem_ = ToPem(cert.get());
  ca.ca_key_pem_ = ToPem(key.get());
  return ca;
}

absl::StatusOr<TlsMaterial> CertAuthority::Issue(const std::string& common_name,
                                                 const std::vector<std::string>& dns_names,
                                                 const std::vector<std::string>& ip_addresses,
                                                 int days) const {
  BioPtr ca_bio(BIO_new_mem_buf(ca_pem_.data(), static_cast<int>(ca_pem_.size())));
  X509Ptr ca_cert(PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr));
  BioPtr key_bio(BIO_new_mem_buf(ca_key_pem_.data(), static_cast<int>(ca_key_pem_.size())));
  PkeyPtr ca_key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!ca_cert || !ca_key) return OpenSslError("loading CA");

  PkeyPtr key = NewKey();
  if (!key) return OpenSslError("key generation");
  X509Ptr cert = NewCert(key.get(), common_name, days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  std::vector<std::string> sans;
  for (const auto& d : dns_names) sans.push_back("DNS:" + d);
  for (const auto& ip : ip_addresses) sans.push_back("IP:" + ip);
  bool ok = AddExtension(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE") &&
            AddExtension(cert.get(), ca_cert.get(), NID_key_usage,
                         "critical,digitalSignature,keyEncipherment") &&
            AddExtension(cert.get(), ca_cert.get(), NID_ext_key_usage, "serverAuth,clientAuth") &&
            (sans.empty() || AddExtension(cert.get(), ca_cert.get(), NID_subject_alt_name,
                                          absl::StrJoin(sans, ",")));
  if (!ok) return OpenSslError(absl::StrCat("extensions for ", common_name));
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) return OpenSslError("signing");
  TlsMaterial tls;
  tls.cert_pem = ToPem(cert.get());
  tls.key_pem = ToPem(key.get());
  tls.ca_pem = ca_pem_;
  tls.common_name = common_name;
  return tls;
}

absl::StatusOr<TlsFiles> CertAuthority::WriteFiles(const TlsMaterial& tls, const std::string& dir,
                                                   const std::string& stem) {
  TlsFiles files{dir + "/" + stem + ".crt", dir + "/" + stem + ".key", dir + "/ca.crt"};
  for (const auto& [path, data, mode] :
       {std::tuple<std::string, std::string, mode_t>{files.cert_file, tls.cert_pem, 0644},
        {files.key_file, tls.key_pem, 0600},
        {files.ca_file, tls.ca_pem, 0644}}) {
    absl::Status s = WriteFile(path, data, mode);
    if (!s.ok()) return s;
  }
  return files;
}

}  // namespace rpci
