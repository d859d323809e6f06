// What reaches the controller's NodeIdentity service from outside: the API
// server's TokenReview answer (JSON) and a node's certificate request (PEM).
// Neither may crash it; an accepted review must name a ServiceAccount, and a
// signed certificate must carry the name the CA chose.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/cert_authority.h"
#include "controller/identity/token_review.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const rpci::CertAuthority* ca = new rpci::CertAuthority(*rpci::CertAuthority::Create("fuzz-ca"));
  std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json answer = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!answer.is_discarded()) {
    absl::StatusOr<rpci::controller::identity::ReviewedToken> t =
        rpci::controller::identity::ParseTokenReview(answer, "rpci");
    if (t.ok() && (t->ns.empty() || t->service_account.empty())) std::abort();
  }
  absl::StatusOr<std::string> cert = ca->SignRequest(text, "agent:node-a", {"node-a"}, {}, absl::Hours(1));
  if (cert.ok()) {
    absl::StatusOr<rpci::CertificateInfo> info = rpci::ReadCertificateInfo(*cert);
    if (!info.ok() || info->common_name != "agent:node-a") std::abort();
  }
  return 0;
}
