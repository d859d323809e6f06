#include "tests/harness/deployment.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace rpci::testing {

std::string Runfile(const std::string& path) { return std::filesystem::absolute(path).string(); }

absl::Status DeploymentDir::Create() const {
  for (const char* d : {"controller", "agent", "kubelet", "plugin-state", "container", "cdi", "logs"}) {
    std::error_code ec;
    std::filesystem::create_directories(root_ + "/" + d, ec);
    if (ec) return absl::InternalError(absl::StrCat("create ", root_, "/", d, ": ", ec.message()));
  }
  return absl::OkStatus();
}

std::unique_ptr<Subprocess> DeploymentDir::Start(const std::string& name, const std::vector<std::string>& argv) const {
  const std::string log = root_ + "/logs/" + name;
  return std::make_unique<Subprocess>(argv, log + ".out", log + ".err");
}

std::vector<std::string> DeploymentDir::LocalController(const std::string& listen, const std::string& http_listen,
                                                        const std::string& log_level) const {
  return {Runfile("controller/rpci-controller"),
          "--store=local",
          "--state-dir=" + root_ + "/controller",
          "--listen=" + listen,
          "--http-listen=" + http_listen,
          "--reconcile-interval-ms=100",
          "--default-spares=2",
          "--log-level=" + log_level};
}

std::vector<std::string> DeploymentDir::Plugin(const std::string& node, const std::string& controller,
                                               const std::string& pools, const std::string& log_level) const {
  return {Runfile("plugin/rpci-plugin"),
          "--node=" + node,
          "--controller=" + controller,
          "--pools=" + pools,
          "--plugin-dir=" + kubelet_dir(),
          "--pod-resources-socket=" + pod_resources_socket(),
          "--cdi-dir=" + root_ + "/cdi",
          "--state-dir=" + root_ + "/plugin-state",
          "--container-dir=" + root_ + "/container",
          "--usage-interval-seconds=1",
          "--health-addr=",
          "--log-level=" + log_level};
}

std::vector<std::string> DeploymentDir::Kubelet(const std::string& pod, const std::string& resource, int wait_seconds,
                                                const std::vector<std::string>& workload) const {
  std::vector<std::string> argv = {Runfile("tests/kubelet/fake_kubelet_main"),
                                   "--plugin-dir=" + kubelet_dir(),
                                   "--pod-resources-socket=" + pod_resources_socket(),
                                   "--pod=" + pod,
                                   "--resource=" + resource,
                                   "--count=1",
                                   absl::StrCat("--wait-seconds=", wait_seconds),
                                   "--isolate-container",
                                   "--"};
  argv.insert(argv.end(), workload.begin(), workload.end());
  return argv;
}

bool DeploymentDir::WaitForKubelet(absl::Duration timeout) const {
  const std::string socket = kubelet_dir() + "/kubelet.sock";
  for (const absl::Time end = absl::Now() + timeout; absl::Now() < end; absl::SleepFor(absl::Milliseconds(50))) {
    if (std::filesystem::exists(socket)) return true;
  }
  return std::filesystem::exists(socket);
}

std::string DeploymentDir::Logs(const std::vector<std::string>& names) const {
  std::vector<std::string> files;
  for (const std::string& n : names) files.push_back(n + ".err");
  if (names.empty()) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root_ + "/logs", ec)) {
      files.push_back(e.path().filename().string());
    }
    std::sort(files.begin(), files.end());
  }
  std::string all;
  for (const std::string& f : files) {
    absl::StrAppend(&all, "--- ", f, ":\n", ReadWholeFile(root_ + "/logs/" + f));
  }
  return all;
}

}  // namespace rpci::testing
