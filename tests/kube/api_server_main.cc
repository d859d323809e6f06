// The test API server as a process, for end-to-end tests that run the
// controller in a network namespace: serves on 127.0.0.1 (a free port),
// prints "serving <url>" on stdout, and runs until SIGINT/SIGTERM.
#include <iostream>

#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/termination.h"
#include "tests/kube/api_server.h"

int main(int argc, char** argv) {
  std::string crds, namespaces, resource_versions = "v1,v1beta1";
  rpci::FlagSet flags("api_server_main [flags]", "An in-memory Kubernetes API server for tests (tests/kube).");
  flags.String("crds", &crds, "directory of CRD YAML files to serve (e.g. deploy/crds)");
  flags.String("namespaces", &namespaces, "comma-separated namespaces to create besides default and kube-*");
  flags.String("resource-versions", &resource_versions,
               "resource.k8s.io versions served, preferred first (\"v1beta1\" as Kubernetes 1.32; empty: no DRA)");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  rpci::kubetest::ApiServer server;
  if (!crds.empty()) {
    if (absl::Status s = server.InstallCrdsFrom(crds); !s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
  }
  for (absl::string_view ns : absl::StrSplit(namespaces, ',', absl::SkipEmpty())) server.CreateNamespace(std::string(ns));
  std::vector<std::string> versions = absl::StrSplit(resource_versions, ',', absl::SkipEmpty());
  server.ServeResourceVersions(versions);
  rpci::InstallTerminationHandler();
  if (absl::Status s = server.Start(); !s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  std::cout << "serving " << server.url() << std::endl;
  rpci::WaitForTermination();
  server.Stop();
  return 0;
}
