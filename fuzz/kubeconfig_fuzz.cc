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

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = rpci::testing::MakeTempDir("rpci-kubeconfig-fuzz") + "/kubeconfig";
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<rpci::kube::KubeConfig> config = rpci::kube::LoadKubeconfig(path);
  if (config.ok()) (void)rpci::kube::KubeClient::Create(*config);
  (void)rpci::kube::LoadKubeconfig(path, "other");
  return 0;
}
