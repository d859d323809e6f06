#include "common/cert_authority.h"

#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <sstream>

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
using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;

BioPtr MemBio(const std::string& pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

absl::StatusOr<std::string> ReadFile(const std::string& what, const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(what, " file ", path, ": cannot open"));
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

absl::Time Asn1ToTime(const ASN1_TIME* t) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

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

// A certificate for `key` named `cn`, valid from an hour ago (clock skew)
// for `lifetime`, not yet signed.
X509Ptr NewCert(EVP_PKEY* key, const std::string& cn, absl::Duration lifetime) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(absl::ToInt64Seconds(lifetime)));
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
  X509Ptr cert = NewCert(key.get(), name, absl::Hours(24) * days);
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
  PkeyPtr key = NewKey();
  if (!key) return OpenSslError("key generation");
  absl::StatusOr<std::string> cert = SignKey(key.get(), common_name, dns_names, ip_addresses, absl::Hours(24) * days);
  if (!cert.ok()) return cert.status();
  TlsMaterial tls;
  tls.cert_pem = *std::move(cert);
  tls.key_pem = ToPem(key.get());
  tls.ca_pem = ca_pem_;
  tls.common_name = common_name;
  return tls;
}

absl::StatusOr<std::string> CertAuthority::SignKey(EVP_PKEY* key, const std::string& common_name,
                                                   const std::vector<std::string>& dns_names,
                                                   const std::vector<std::string>& ip_addresses,
                                                   absl::Duration lifetime) const {
  X509Ptr ca_cert(PEM_read_bio_X509(MemBio(ca_pem_).get(), nullptr, nullptr, nullptr));
  PkeyPtr ca_key(PEM_read_bio_PrivateKey(MemBio(ca_key_pem_).get(), nullptr, nullptr, nullptr));
  if (!ca_cert || !ca_key) return OpenSslError("loading CA");
  X509Ptr cert = NewCert(key, common_name, lifetime);
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
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("certificate for ", common_name, ": bad extensions (SANs ",
                                                          absl::StrJoin(sans, ","), ")"));
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) return OpenSslError("signing");
  return ToPem(cert.get());
}

absl::StatusOr<std::string> CertAuthority::SignRequest(const std::string& csr_pem, const std::string& common_name,
                                                       const std::vector<std::string>& dns_names,
                                                       const std::vector<std::string>& ip_addresses,
                                                       absl::Duration lifetime) const {
  ReqPtr req(PEM_read_bio_X509_REQ(MemBio(csr_pem).get(), nullptr, nullptr, nullptr));
  if (!req) return absl::InvalidArgumentError("certificate request: not a PEM PKCS#10 request");
  PkeyPtr key(X509_REQ_get_pubkey(req.get()));
  if (!key) return absl::InvalidArgumentError("certificate request: no public key");
  if (X509_REQ_verify(req.get(), key.get()) != 1) {
    return absl::InvalidArgumentError("certificate request: signature does not verify with its key");
  }
  const int type = EVP_PKEY_get_base_id(key.get());
  const int bits = EVP_PKEY_get_bits(key.get());
  if (!((type == EVP_PKEY_EC && bits >= 256) || (type == EVP_PKEY_RSA && bits >= 2048))) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate request: key must be EC (256 bits or more) or RSA (2048 or more), got type ",
                     type, " with ", bits, " bits"));
  }
  return SignKey(key.get(), common_name, dns_names, ip_addresses, lifetime);
}

absl::StatusOr<CertAuthority> CertAuthority::Load(const std::string& cert_file, const std::string& key_file) {
  absl::StatusOr<std::string> cert_pem = ReadFile("CA certificate", cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadFile("CA key", key_file);
  if (!key_pem.ok()) return key_pem.status();
  X509Ptr cert(PEM_read_bio_X509(MemBio(*cert_pem).get(), nullptr, nullptr, nullptr));
  if (!cert) return absl::InvalidArgumentError(absl::StrCat("CA certificate file ", cert_file, ": not a PEM certificate"));
  PkeyPtr key(PEM_read_bio_PrivateKey(MemBio(*key_pem).get(), nullptr, nullptr, nullptr));
  if (!key) return absl::InvalidArgumentError(absl::StrCat("CA key file ", key_file, ": not a PEM private key"));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("CA key file ", key_file, ": does not match ", cert_file));
  }
  if (X509_check_ca(cert.get()) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("CA certificate file ", cert_file, ": not a CA certificate"));
  }
  CertAuthority ca;
  ca.ca_pem_ = *std::move(cert_pem);
  ca.ca_key_pem_ = *std::move(key_pem);
  return ca;
}

absl::StatusOr<CertificateRequest> NewCertificateRequest(const std::string& common_name) {
  PkeyPtr key = NewKey();
  if (!key) return OpenSslError("key generation");
  ReqPtr req(X509_REQ_new());
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                             -1, -1, 0);
  if (X509_REQ_set_pubkey(req.get(), key.get()) != 1 || X509_REQ_sign(req.get(), key.get(), EVP_sha256()) == 0) {
    return OpenSslError("certificate request signing");
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return CertificateRequest{ToPem(key.get()), std::string(data, len)};
}

absl::StatusOr<CertificateInfo> ReadCertificateInfo(const std::string& cert_pem) {
  X509Ptr cert(PEM_read_bio_X509(MemBio(cert_pem).get(), nullptr, nullptr, nullptr));
  if (!cert) return absl::InvalidArgumentError("not a PEM certificate");
  CertificateInfo info;
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof(cn));
  info.common_name = cn;
  info.not_before = Asn1ToTime(X509_get0_notBefore(cert.get()));
  info.not_after = Asn1ToTime(X509_get0_notAfter(cert.get()));
  return info;
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

absl::Status CertAuthority::WriteCa(const std::string& cert_file, const std::string& key_file) const {
  if (absl::Status s = WriteFile(cert_file, ca_pem_, 0644); !s.ok()) return s;
  return WriteFile(key_file, ca_key_pem_, 0600);
}

}  // namespace rpci
