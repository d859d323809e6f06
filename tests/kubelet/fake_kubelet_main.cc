// fake-kubelet: the test kubelet as a process, for manual runs and scripts.
// Serves Registration and pod-resources and logs every device list it gets.

#include <signal.h>

#include <iostream>

#include "common/flags.h"
#include "common/log.h"
#include "tests/kubelet/fake_kubelet.h"

namespace {
volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  std::string plugin_dir = "/var/lib/kubelet/device-plugins";
  std::string pod_resources = "/var/lib/kubelet/pod-resources/kubelet.sock";
  rpci::FlagSet flags("fake-kubelet [flags]",
                      "A test kubelet: device-plugin Registration on <plugin-dir>/kubelet.sock and pod-resources "
                      "List/Get; prints the plugins' device lists as they change.");
  flags.String("plugin-dir", &plugin_dir, "device-plugin socket directory");
  flags.String("pod-resources-socket", &pod_resources, "where pod-resources is served");
  auto args = flags.Parse(argc, argv);
  if (!args.ok()) {
    std::cerr << args.status().message() << "\n" << flags.Help();
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Help();
    return 0;
  }
  flags.Apply();
  rpci::Logger log("fake-kubelet");
  rpci::testing::FakeKubelet kubelet(plugin_dir, pod_resources);
  if (absl::Status s = kubelet.Start(); !s.ok()) {
    log.Error("cannot start", {{"error", std::string(s.message())}});
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  std::map<std::string, int> seen;
  while (!g_stop) {
    for (const rpci::testing::Registration& r : kubelet.registrations()) {
      const int updates = kubelet.ListAndWatchUpdates(r.resource_name);
      if (seen[r.resource_name] == updates) continue;
      seen[r.resource_name] = updates;
      nlohmann::json devices = nlohmann::json::array();
      for (const auto& d : kubelet.Devices(r.resource_name)) devices.push_back({{"id", d.id}, {"health", d.health}});
      log.Info("devices", {{"resource", r.resource_name}, {"devices", devices}});
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  kubelet.Stop();
  return 0;
}
