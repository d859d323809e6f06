#ifndef RPCI_COMMON_CERT_AUTHORITY_H_
#define RPCI_COMMON_CERT_AUTHORITY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tls.h"

namespace rpci {

// A small certificate authority (EC P-256) that mints mTLS certificates for
// the demo and for tests. A cluster install takes its certificates from the
// Helm chart or cert-manager instead.
class CertAuthority {
 public:
  // A new CA named `name`, valid for `days`.
  static absl::StatusOr<CertAuthority> Create(const std::string& name, int days = 365);

  // A certificate for `common_name` ("agent:node-a"), usable as both server
  // and client, with DNS and IP subject alternative names.
  absl::StatusOr<TlsMaterial> Issue(const std::string& common_name,
                                    const std::vector<std::string>& dns_names,
                                    const std::vector<std::string>& ip_addresses, int days = 365) const;

  // Writes tls's cert, key and CA into dir/<stem>.crt, <stem>.key, ca.crt and
  // returns their paths.
  static absl::StatusOr<TlsFiles> WriteFiles(const TlsMaterial& tls, const std::string& dir,
                                             const std::string& stem);

  const std::string& ca_pem() const { return ca_pem_; }

 private:
  std::string ca_pem_;
  std::string ca_key_pem_;
};

}  // namespace rpci

#endif  // RPCI_COMMON_CERT_AUTHORITY_H_
