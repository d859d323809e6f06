#ifndef RPCI_COMMON_CERT_AUTHORITY_H_
#define RPCI_COMMON_CERT_AUTHORITY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tls.h"

struct evp_pkey_st;

namespace rpci {

// A new EC P-256 key and a PKCS#10 request for `common_name`, signed by it
// (a node asks the controller for its certificate with it; the key stays).
struct CertificateRequest {
  std::string key_pem;
  std::string csr_pem;
};
absl::StatusOr<CertificateRequest> NewCertificateRequest(const std::string& common_name);

// What a signed certificate says, for callers that schedule its renewal.
struct CertificateInfo {
  std::string common_name;
  absl::Time not_before;
  absl::Time not_after;
};
absl::StatusOr<CertificateInfo> ReadCertificateInfo(const std::string& cert_pem);

// A small certificate authority (EC P-256) that mints mTLS certificates: for
// the demo and tests (tools/certs), and in the controller, which signs nodes'
// requests (controller/identity) and is the only holder of the CA key.
class CertAuthority {
 public:
  // A new CA named `name`, valid for `days`.
  static absl::StatusOr<CertAuthority> Create(const std::string& name, int days = 365);

  // The CA in PEM files (a mounted Secret's tls.crt and tls.key). NOT_FOUND /
  // INVALID_ARGUMENT naming the file; INVALID_ARGUMENT when the key does not
  // match the certificate or the certificate is not a CA.
  static absl::StatusOr<CertAuthority> Load(const std::string& cert_file, const std::string& key_file);

  // A certificate for `common_name` ("agent:node-a"), usable as both server
  // and client, with DNS and IP subject alternative names.
  absl::StatusOr<TlsMaterial> Issue(const std::string& common_name,
                                    const std::vector<std::string>& dns_names,
                                    const std::vector<std::string>& ip_addresses, int days = 365) const;

  // Signs `csr_pem` (its signature must verify) as `common_name` with the
  // given SANs, valid from now for `lifetime`; server and client usage. The
  // request's own subject and extensions are ignored: the CA decides what the
  // certificate says. INVALID_ARGUMENT for a malformed or badly signed
  // request, or a weak key (EC under 256 bits, RSA under 2048, other types).
  absl::StatusOr<std::string> SignRequest(const std::string& csr_pem, const std::string& common_name,
                                          const std::vector<std::string>& dns_names,
                                          const std::vector<std::string>& ip_addresses,
                                          absl::Duration lifetime) const;

  // Writes tls's cert, key and CA into dir/<stem>.crt, <stem>.key, ca.crt and
  // returns their paths.
  static absl::StatusOr<TlsFiles> WriteFiles(const TlsMaterial& tls, const std::string& dir,
                                             const std::string& stem);

  // Writes the CA certificate (0644) and key (0600): what the controller's
  // --identity-ca-cert / --identity-ca-key read.
  absl::Status WriteCa(const std::string& cert_file, const std::string& key_file) const;

  const std::string& ca_pem() const { return ca_pem_; }

 private:
  absl::StatusOr<std::string> SignKey(evp_pkey_st* key, const std::string& common_name,
                                      const std::vector<std::string>& dns_names,
                                      const std::vector<std::string>& ip_addresses, absl::Duration lifetime) const;

  std::string ca_pem_;
  std::string ca_key_pem_;
};

}  // namespace rpci

#endif  // RPCI_COMMON_CERT_AUTHORITY_H_
