// rpci-certs: makes a CA and mTLS certificates for rpci components, for the
// demo and for clusters without cert-manager.
//   rpci-certs --dir DIR --names controller,agent:node-a,plugin:node-b
// writes DIR/ca.crt, DIR/ca.key and DIR/<name>.crt/.key (":" becomes "-").

#include <sys/stat.h>

#include <fstream>
#include <iostream>
#include <optional>

#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/cert_authority.h"
#include "common/flags.h"

int main(int argc, char** argv) {
  std::string dir, names, dns = "localhost", ips = "127.0.0.1";
  int64_t days = 365;
  rpci::FlagSet flags("rpci-certs --dir DIR --names NAME[,NAME...] [flags]",
                      "Creates a CA and one certificate per name (common name \"<role>[:<node>]\", usable as both "
                      "TLS server and client) for rpci's mutual TLS.");
  flags.String("dir", &dir, "output directory (created)");
  flags.String("names", &names, "comma-separated common names, e.g. controller,agent:node-a,plugin:node-b");
  flags.String("dns", &dns, "comma-separated DNS subject alternative names for every certificate");
  flags.String("ips", &ips, "comma-separated IP subject alternative names for every certificate");
  flags.Int("days", &days, "validity in days");
  flags.Require([&] { return !dir.empty() && !names.empty(); }, "--dir and --names are required (see --help)");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  mkdir(dir.c_str(), 0755);
  absl::StatusOr<rpci::CertAuthority> ca = rpci::CertAuthority::Create("rpci-ca", static_cast<int>(days));
  if (!ca.ok()) {
    std::cerr << ca.status().message() << "\n";
    return 1;
  }
  std::vector<std::string> dns_names = absl::StrSplit(dns, ',', absl::SkipEmpty());
  std::vector<std::string> ip_addresses = absl::StrSplit(ips, ',', absl::SkipEmpty());
  std::vector<std::string> common_names = absl::StrSplit(names, ',', absl::SkipEmpty());
  for (const std::string& name : common_names) {
    absl::StatusOr<rpci::TlsMaterial> tls = ca->Issue(name, dns_names, ip_addresses, static_cast<int>(days));
    if (!tls.ok()) {
      std::cerr << name << ": " << tls.status().message() << "\n";
      return 1;
    }
    absl::StatusOr<rpci::TlsFiles> files =
        rpci::CertAuthority::WriteFiles(*tls, dir, absl::StrReplaceAll(name, {{":", "-"}}));
    if (!files.ok()) {
      std::cerr << files.status().message() << "\n";
      return 1;
    }
    std::cout << name << ": " << files->cert_file << " " << files->key_file << "\n";
  }
  std::cout << "CA: " << dir << "/ca.crt\n";
  return 0;
}
