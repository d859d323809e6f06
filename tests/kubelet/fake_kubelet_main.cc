// fake-kubelet: the test kubelet as a process, for manual runs and scripts.
// Serves Registration and pod-resources and logs every device list it gets.
// With --pod it also plays one pod's life: wait for the resource's devices,
// admit the pod (GetPreferredAllocation, Allocate, PreStartContainer), run the
// command after `--` as the pod's container with the environment Allocate
// returned and, with --cdi-dir, its CDI devices' edits (--isolate-container:
// only that environment, and its mounts),
// then remove the pod and exit with the command's status.
// With --kubelet-dir it is the kubelet's DRA side instead (fake_dra_kubelet.h):
// it registers DRA plugins from <kubelet-dir>/plugins_registry and, with
// --claim namespace/name/uid, prepares the claim with the driver, runs the
// command with the claim's CDI devices applied from --cdi-dir (needed then),
// unprepares
// and exits with the command's status.

#include <signal.h>

#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"

#include "common/flags.h"
#include "common/log.h"
#include "tests/kubelet/container.h"
#include "tests/kubelet/fake_dra_kubelet.h"
#include "tests/kubelet/fake_kubelet.h"

namespace {
volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }
}  // namespace

namespace {

int RunPod(rpci::testing::FakeKubelet& kubelet, const rpci::Logger& log, const std::string& pod,
           const std::string& resource, int count, absl::Duration wait, bool isolate,
           const std::vector<std::string>& command) {
  size_t slash = pod.find('/');
  if (slash == std::string::npos || command.empty()) {
    log.Error("--pod wants namespace/name and a command after --", {{"pod", pod}});
    return 2;
  }
  const std::string ns = pod.substr(0, slash), name = pod.substr(slash + 1);
  log.Info("waiting for devices", {{"resource", resource}, {"count", count}});
  bool ready = kubelet.WaitForDevices(
      resource,
      [&](const std::vector<rpci::testing::AdvertisedDevice>& devices) {
        int healthy = 0;
        for (const auto& d : devices) healthy += d.health == "Healthy";
        return healthy >= count;
      },
      wait);
  if (!ready) {
    log.Error("not enough healthy devices advertised", {{"resource", resource}, {"count", count}});
    return 3;
  }
  absl::StatusOr<rpci::testing::AdmittedContainer> admitted = kubelet.AdmitPod(ns, name, "main", resource, count);
  if (!admitted.ok()) {
    log.Error("pod admission failed", {{"pod", pod}, {"error", std::string(admitted.status().message())}});
    return 4;
  }
  nlohmann::json envs = nlohmann::json::object(), mounts = nlohmann::json::array(), cdi = nlohmann::json::array();
  // What the container gets: Allocate's answer with its CDI devices applied.
  const v1beta1::ContainerAllocateResponse& run = admitted->container;
  for (const auto& [k, v] : run.envs()) envs[k] = v;
  for (const auto& m : run.mounts()) {
    mounts.push_back({{"container", m.container_path()}, {"host", m.host_path()}, {"read_only", m.read_only()}});
  }
  for (const auto& c : admitted->response.cdi_devices()) cdi.push_back(c.name());
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& d : run.devices()) {
    nodes.push_back({{"container", d.container_path()}, {"host", d.host_path()}, {"permissions", d.permissions()}});
  }
  log.Info("pod admitted", {{"pod", pod}, {"devices", admitted->device_ids}, {"envs", envs}, {"mounts", mounts},
                            {"cdi_devices", cdi}, {"device_nodes", nodes}});
  int rc = rpci::testing::RunContainer(run, command, isolate);
  log.Info("container exited", {{"pod", pod}, {"exit_code", rc}});
  kubelet.RemovePod(ns, name);
  return rc;
}

// The DRA side: a claim's life as the kubelet and the runtime play it.
int RunClaim(rpci::testing::FakeDraKubelet& kubelet, const rpci::Logger& log, const std::string& driver,
             const std::string& claim, absl::Duration wait, bool isolate, const std::vector<std::string>& command) {
  std::vector<std::string> parts = absl::StrSplit(claim, '/');
  if (parts.size() != 3 || command.empty()) {
    log.Error("--claim wants namespace/name/uid and a command after --", {{"claim", claim}});
    return 2;
  }
  const rpci::testing::ClaimRef ref{parts[0], parts[1], parts[2]};
  if (!kubelet.WaitForDriver(driver, 1, wait)) {
    log.Error("DRA driver never registered", {{"driver", driver}});
    return 3;
  }
  absl::StatusOr<std::vector<std::string>> ids = kubelet.PrepareClaim(driver, ref);
  absl::StatusOr<v1beta1::ContainerAllocateResponse> edits =
      ids.ok() ? kubelet.ContainerEdits(*ids) : absl::StatusOr<v1beta1::ContainerAllocateResponse>(ids.status());
  if (!edits.ok()) {
    log.Error("claim not prepared", {{"claim", claim}, {"error", std::string(edits.status().message())}});
    return 4;
  }
  log.Info("claim prepared", {{"claim", claim}, {"cdi_devices", *ids}});
  int rc = rpci::testing::RunContainer(*edits, command, isolate);
  log.Info("container exited", {{"claim", claim}, {"exit_code", rc}});
  if (absl::Status s = kubelet.UnprepareClaim(driver, ref); !s.ok()) {
    log.Error("claim not unprepared", {{"claim", claim}, {"error", std::string(s.message())}});
    return rc == 0 ? 5 : rc;
  }
  return rc;
}

int RunDra(const std::string& kubelet_dir, const std::string& cdi_dir, const std::string& claim, absl::Duration wait,
           bool isolate, const std::vector<std::string>& command) {
  rpci::Logger log("fake-kubelet");
  rpci::testing::FakeDraKubelet kubelet(kubelet_dir, cdi_dir);
  if (absl::Status s = kubelet.Start(); !s.ok()) {
    log.Error("cannot start", {{"error", std::string(s.message())}});
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  if (!claim.empty()) return RunClaim(kubelet, log, "rpci.io", claim, wait, isolate, command);
  size_t seen = 0;
  while (!g_stop) {
    std::vector<rpci::testing::DraRegistration> regs = kubelet.registrations();
    for (; seen < regs.size(); ++seen) {
      const rpci::testing::DraRegistration& r = regs[seen];
      log.Info("registration", {{"driver", r.driver}, {"endpoint", r.endpoint}, {"service", r.chosen_service},
                                {"error", r.error}});
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string plugin_dir = "/var/lib/kubelet/device-plugins";
  std::string pod_resources = "/var/lib/kubelet/pod-resources/kubelet.sock";
  rpci::FlagSet flags("fake-kubelet [flags]",
                      "A test kubelet: device-plugin Registration on <plugin-dir>/kubelet.sock and pod-resources "
                      "List/Get; prints the plugins' device lists as they change.");
  flags.String("plugin-dir", &plugin_dir, "device-plugin socket directory");
  flags.String("pod-resources-socket", &pod_resources, "where pod-resources is served");
  std::string cdi_dir;
  flags.String("cdi-dir", &cdi_dir,
               "the runtime's CDI spec directory: Allocate's CDI devices are resolved there and their edits "
               "applied to the container (empty: a runtime without CDI, which ignores them)");
  std::string pod, resource = "rpci.io/emu";
  int64_t count = 1, wait_seconds = 60;
  flags.String("pod", &pod, "namespace/name of a pod to admit and run (command after --)");
  flags.String("resource", &resource, "extended resource the pod requests");
  flags.Int("count", &count, "how many devices the pod requests");
  flags.Int("wait-seconds", &wait_seconds, "how long to wait for enough healthy devices");
  std::string kubelet_dir, claim;
  flags.String("kubelet-dir", &kubelet_dir,
               "be the kubelet's DRA side instead: register DRA plugins from <kubelet-dir>/plugins_registry");
  flags.String("claim", &claim, "with --kubelet-dir: namespace/name/uid of a claim to prepare and run (command after --)");
  bool isolate = false;
  flags.Bool("isolate-container", &isolate,
             "run the pod's command with only Allocate's environment and, in its own mount namespace, Allocate's "
             "mounts (needs CAP_SYS_ADMIN; the command must be a path)");
  std::vector<std::string> args;
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv, &args)) return *exit_code;
  if (!kubelet_dir.empty()) return RunDra(kubelet_dir, cdi_dir, claim, absl::Seconds(wait_seconds), isolate, args);
  rpci::Logger log("fake-kubelet");
  rpci::testing::FakeKubelet kubelet(plugin_dir, pod_resources, cdi_dir);
  if (absl::Status s = kubelet.Start(); !s.ok()) {
    log.Error("cannot start", {{"error", std::string(s.message())}});
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  if (!pod.empty()) {
    int rc = RunPod(kubelet, log, pod, resource, static_cast<int>(count), absl::Seconds(wait_seconds), isolate, args);
    kubelet.Stop();
    return rc;
  }
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
