#include "tests/harness/test_certs.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/cert_authority.h"

namespace rpci::testing {
namespace {

std::string Stem(const std::string& common_name) { return absl::StrReplaceAll(common_name, {{":", "-"}}); }

}  // namespace

std::vector<std::string> TestCerts::Flags(const std::string& common_name) const {
  const std::string base = dir + "/" + Stem(common_name);
  return {"--tls-cert=" + base + ".crt", "--tls-key=" + base + ".key", "--tls-ca=" + dir + "/ca.crt"};
}

std::string TestCerts::AgentConfig(const std::string& common_name) const {
  const std::string base = dir + "/" + Stem(common_name);
  return absl::StrCat("tls: {cert: ", base, ".crt, key: ", base, ".key, ca: ", dir, "/ca.crt}\n");
}

absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir, const std::vector<std::string>& common_names,
                                        const std::vector<std::string>& ip_addresses) {
  absl::StatusOr<CertAuthority> ca = CertAuthority::Create("rpci-test-ca");
  if (!ca.ok()) return ca.status();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  for (const std::string& name : common_names) {
    absl::StatusOr<TlsMaterial> tls = ca->Issue(name, {"localhost"}, ip_addresses);
    if (!tls.ok()) return tls.status();
    absl::StatusOr<TlsFiles> files = CertAuthority::WriteFiles(*tls, dir, Stem(name));
    if (!files.ok()) return files.status();
  }
  return TestCerts{dir};
}

}  // namespace rpci::testing
