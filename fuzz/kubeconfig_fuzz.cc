// A kubeconfig (YAML) the controller and `kubectl rpci` load: any bytes give
// a config or a Status. LoadKubeconfig takes a path, so the input is written
// to a temporary file first; relative certificate paths resolve next to it
// (in an empty directory).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "common/testing/temp_dir.h"
#include "controller/kube/client.h"

namespace {

const std::string& Path() {
  static const std::string path = [] {
    return rpci::testing::MakeTempDir("rpci-kubeconfig-fuzz") + "/kubeconfig";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::ofstream(Path(), std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<rpci::kube::KubeConfig> config = rpci::kube::LoadKubeconfig(Path());
  if (config.ok()) (void)rpci::kube::KubeClient::Create(*config);
  (void)rpci::kube::LoadKubeconfig(Path(), "other");
  return 0;
}
