// Runs inside the test machine (//tests/vm:vfio_e2e_test): QEMU's edu and
// NVMe controller exported by `rpci-agent serve` through VFIO, attached by
// rpci-plugin through the fake kubelet, and driven by examples/edu and
// examples/nvme through librpci in the pod's isolated container. Two hosts
// joined by a veth pair, as in tests/e2e:
//   host a: rpci-controller (local store) and rpci-agent (vfio backend);
//   host b: rpci-plugin, the fake kubelet and the pod's container.
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "agent/vfio/bind.h"
#include "agent/vfio/testing/guest_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/job_summary.h"
#include "tests/harness/netns.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_certs.h"
#include "tests/kubelet/fake_kubelet.h"

namespace rpci::testing {
namespace {

constexpr int kControllerPort = 7460, kControllerHttp = 7461, kAgentPort = 7450, kAgentHttp = 7451;

std::string Abs(const std::string& runfile) { return std::filesystem::absolute(runfile).string(); }


class VfioEndToEndTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(std::system("modprobe vfio-pci"), 0);
    // The operator's step for the `driver: [vfio-pci]` rule: edu is bound to
    // vfio-pci before the agent starts. NVMe is left unbound; the agent binds
    // it through driver_override.
    agent::vfio::BindOptions edu;
    edu.bdf = agent::vfio::guest::FindFunction("0x1234", "0x11e8");
    ASSERT_TRUE(agent::vfio::BindToVfioPci(edu).ok());
  }
  void SetUp() override {
    char tmpl[] = "/tmp/rpci-vm-e2e-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* d : {"controller", "agent", "kubelet", "plugin-state", "container", "cdi", "logs"}) {
      std::filesystem::create_directories(dir_ + "/" + d);
    }
    absl::StatusOr<VethPair> pair = VethPair::Create("vfio");
    ASSERT_TRUE(pair.ok()) << pair.status();
    pair_.emplace(std::move(*pair));
    controller_address_ = absl::StrCat(pair_->addr_a(), ":", kControllerPort);
    // mTLS as tools/certs makes it for local mode.
    absl::StatusOr<TestCerts> certs = MakeTestCerts(
        dir_ + "/certs", {"controller", "agent:vm-device-server", "plugin:vm-compute-node"}, {pair_->addr_a()});
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
    StartController();
    StartAgent();
    ASSERT_TRUE(WaitAgentReady()) << Logs();
  }

  // The agent's /readyz answers 200 (registered, serving sessions).
  bool WaitAgentReady() {
    const std::string url = absl::StrCat("http://", pair_->addr_a(), ":", kAgentHttp, "/readyz");
    for (int i = 0; i < 120; ++i) {
      auto curl = Start(0, "readyz", {"curl", "-sf", "--max-time", "2", url});
      if (curl->Wait(absl::Seconds(5)) == 0) return true;
      absl::SleepFor(absl::Milliseconds(500));
    }
    return false;
  }
  void TearDown() override {
    plugin_.reset();
    agent_.reset();
    controller_.reset();
    if (HasFailure()) std::printf("%s", Logs().c_str());
  }

  std::unique_ptr<Subprocess> Start(int host, const std::string& name, const std::vector<std::string>& argv) {
    const std::string log = dir_ + "/logs/" + name;
    return std::make_unique<Subprocess>(pair_->ExecIn(host, argv), log + ".out", log + ".err");
  }
  void StartController() {
    std::vector<std::string> argv = {Abs("controller/rpci-controller"), "--store=local",
                                     "--state-dir=" + dir_ + "/controller", "--listen=" + controller_address_,
                                     absl::StrCat("--http-listen=", pair_->addr_a(), ":", kControllerHttp),
                                     "--reconcile-interval-ms=100", "--default-spares=2", "--log-level=warn"};
    for (const std::string& f : certs_.Flags("controller")) argv.push_back(f);
    controller_ = Start(0, "controller", argv);
  }
  void StartAgent() {
    std::ofstream(dir_ + "/agent.yaml")
        << "node: vm-device-server\n"
        << "controller: {address: \"" << controller_address_ << "\"}\n"
        << certs_.AgentConfig("agent:vm-device-server")
        << "session: {listen: \"0.0.0.0:" << kAgentPort << "\", advertise: \"" << pair_->addr_a() << ":" << kAgentPort
        << "\", state_dir: " << dir_ << "/agent}\n"
        << "fabric: {provider: \"tcp;ofi_rxm\", address: " << pair_->addr_a() << "}\n"
        << "inventory: {vfio: true, vfio_dma_size: 1048576}\n"
        << "export:\n  rules:\n"
        << "    - {pool: edu, vendor: 0x1234, device: 0x11e8, driver: [vfio-pci]}\n"
        << "    - {pool: nvme, class: [\"0x010802\"]}\n"
        << "    - {pool: vga, vendor: 0x1234, device: 0x1111}\n"
        << "http: {listen: \"" << pair_->addr_a() << ":" << kAgentHttp << "\"}\n"
        << "log_level: info\n";
    agent_ = Start(0, "agent", {Abs("agent/rpci-agent"), "serve", "--config=" + dir_ + "/agent.yaml"});
  }
  void StartPlugin() {
    std::vector<std::string> argv = {
        Abs("plugin/rpci-plugin"), "--node=vm-compute-node", "--controller=" + controller_address_,
        "--pools=edu,nvme,vga", "--plugin-dir=" + dir_ + "/kubelet",
        "--pod-resources-socket=" + dir_ + "/kubelet/pod-resources.sock", "--cdi-dir=" + dir_ + "/cdi",
        "--state-dir=" + dir_ + "/plugin-state", "--container-dir=" + dir_ + "/container",
        "--usage-interval-seconds=1", "--release-grace-seconds=1", "--health-addr=", "--log-level=warn"};
    for (const std::string& f : certs_.Flags("plugin:vm-compute-node")) argv.push_back(f);
    plugin_ = Start(1, "plugin", argv);
  }

  // The fake kubelet admits a pod asking for `resource` and runs `workload`
  // as its container; the kubelet's exit status is the container's. Under
  // TCG on a loaded machine the plugin's first session reservation can miss
  // its gRPC deadline; a failed admission is tried again, as a kubelet does.
  std::unique_ptr<Subprocess> RunPod(const std::string& name, const std::string& resource,
                                     const std::vector<std::string>& workload) {
    std::unique_ptr<Subprocess> kubelet;
    for (int attempt = 0; attempt < 3; ++attempt) {
      std::vector<std::string> argv = {Abs("tests/kubelet/fake_kubelet_main"), "--plugin-dir=" + dir_ + "/kubelet",
                                       "--pod-resources-socket=" + dir_ + "/kubelet/pod-resources.sock",
                                       absl::StrCat("--pod=vm/", name, "-", attempt), "--resource=" + resource,
                                       "--count=1", "--wait-seconds=90", "--isolate-container", "--"};
      argv.insert(argv.end(), workload.begin(), workload.end());
      kubelet = Start(1, absl::StrCat("kubelet-", name, "-", attempt), argv);
      for (int i = 0; i < 200 && !std::filesystem::exists(dir_ + "/kubelet/kubelet.sock"); ++i) {
        absl::SleepFor(absl::Milliseconds(50));
      }
      if (plugin_ == nullptr) StartPlugin();
      kubelet->Wait(absl::Seconds(150));
      if (kubelet->err().find("pod admission failed") == std::string::npos) break;
      std::printf("%s: pod admission failed (attempt %d), trying again\n", name.c_str(), attempt + 1);
    }
    return kubelet;
  }

  std::string Logs() const {
    std::string all;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/logs")) {
      all += absl::StrCat("--- ", e.path().filename().string(), ":\n", ReadWholeFile(e.path().string()));
    }
    return all;
  }

  std::string dir_, controller_address_;
  TestCerts certs_;
  std::optional<VethPair> pair_;
  std::unique_ptr<Subprocess> controller_, agent_, plugin_;
};

TEST_F(VfioEndToEndTest, EduThroughVfioComputesDmasAndInterruptsWithoutKicks) {
  auto pod = RunPod("edu", "rpci.io/edu", {Abs("examples/edu/edu")});
  ASSERT_EQ(pod->Wait(absl::ZeroDuration()), 0) << pod->out() << pod->err();
  nlohmann::json s = JobSummary(pod->out());
  ASSERT_TRUE(s.is_object()) << pod->out();
  EXPECT_TRUE(s["ok"].get<bool>()) << s.dump();
  EXPECT_EQ(s["ident"], "0x010000ed");
  EXPECT_EQ(s["device"], "vm-device-server-" + absl::StrReplaceAll(agent::vfio::guest::FindFunction("0x1234", "0x11e8"), {{":", "-"}, {".", "-"}}));
  std::printf("edu: DMA completion interrupt after %.1f ms\n", s["irq_ms"].get<double>());
}

TEST_F(VfioEndToEndTest, NvmeThroughVfioIdentifiesAndRoundTripsBlocks) {
  auto pod = RunPod("nvme", "rpci.io/nvme", {Abs("examples/nvme/nvme"), "--lba=16", "--blocks=2"});
  ASSERT_EQ(pod->Wait(absl::ZeroDuration()), 0) << pod->out() << pod->err();
  nlohmann::json s = JobSummary(pod->out());
  ASSERT_TRUE(s.is_object()) << pod->out();
  EXPECT_TRUE(s["ok"].get<bool>()) << s.dump();
  EXPECT_EQ(s["model"], "QEMU NVMe Ctrl");
  EXPECT_EQ(s["serial"], "rpci0001");
  EXPECT_EQ(s["crc_written"], s["crc_read"]);
}

// SIGKILL of the agent while a workload drives the NVMe controller: the kernel
// resets the device when the agent's VFIO descriptors close, so the restarted
// agent does not resume the session; the workload's next call fails with the
// documented status (docs/sessions.md, Resilience) instead of talking to a
// controller that forgot its queues.
TEST_F(VfioEndToEndTest, AgentSigkillGivesTheWorkloadTheDeviceResetStatus) {
  std::vector<std::string> argv = {Abs("tests/kubelet/fake_kubelet_main"), "--plugin-dir=" + dir_ + "/kubelet",
                                   "--pod-resources-socket=" + dir_ + "/kubelet/pod-resources.sock",
                                   "--pod=vm/nvme-kill", "--resource=rpci.io/nvme", "--count=1", "--wait-seconds=90",
                                   "--isolate-container", "--", Abs("examples/nvme/nvme"), "--pause-ms=8000"};
  auto kubelet = Start(1, "kubelet-kill", argv);
  for (int i = 0; i < 200 && !std::filesystem::exists(dir_ + "/kubelet/kubelet.sock"); ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  StartPlugin();
  bool paused = false;
  for (int i = 0; i < 1200 && !paused; ++i) {
    paused = ReadWholeFile(dir_ + "/logs/kubelet-kill.out").find("\"paused\":true") != std::string::npos;
    if (!paused) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(paused) << Logs();
  agent_->Signal(SIGKILL);
  agent_->Wait(absl::Seconds(5));
  StartAgent();
  ASSERT_NE(kubelet->Wait(absl::Seconds(90)), 0) << kubelet->out();
  nlohmann::json s = JobSummary(kubelet->out());
  ASSERT_TRUE(s.is_object()) << kubelet->out() << kubelet->err();
  EXPECT_FALSE(s["ok"].get<bool>());
  EXPECT_NE(s["error"].get<std::string>().find("device was reset"), std::string::npos) << s.dump();
}

// QEMU's VGA function sits on the root bus without FLR or a PM reset: the
// kernel has no reset for it. After its first tenant leaves, the agent cannot
// make it clean, so the kubelet sees it Unhealthy (and no one is granted it).
TEST_F(VfioEndToEndTest, ADeviceWhoseResetFailsTurnsUnhealthyAtTheKubelet) {
  FakeKubelet kubelet(dir_ + "/kubelet", dir_ + "/kubelet/pod-resources.sock");
  ASSERT_TRUE(kubelet.Start().ok());
  StartPlugin();
  auto health_is = [](const std::string& h) {
    return [h](const std::vector<AdvertisedDevice>& ds) { return ds.size() == 1 && ds[0].health == h; };
  };
  ASSERT_TRUE(kubelet.WaitForDevices("rpci.io/vga", health_is("Healthy"), absl::Seconds(60))) << Logs();
  absl::StatusOr<AdmittedContainer> pod = kubelet.AdmitPod("vm", "vga-a", "main", "rpci.io/vga", 1);
  for (int attempt = 1; attempt < 3 && !pod.ok(); ++attempt) {  // as RunPod: a kubelet tries again
    std::printf("vga: pod admission failed (%s), trying again\n", std::string(pod.status().message()).c_str());
    pod = kubelet.AdmitPod("vm", "vga-a", "main", "rpci.io/vga", 1);
  }
  ASSERT_TRUE(pod.ok()) << pod.status() << Logs();
  kubelet.RemovePod("vm", "vga-a");
  const absl::Time removed = absl::Now();
  ASSERT_TRUE(kubelet.WaitForDevices("rpci.io/vga", health_is("Unhealthy"), absl::Seconds(60))) << Logs();
  std::printf("vga: pod removed -> Unhealthy at the kubelet in %.0f ms\n",
              absl::ToDoubleMilliseconds(absl::Now() - removed));
  plugin_.reset();
  kubelet.Stop();
}

// The kernel asks for edu back (its removal through sysfs, which waits for
// the agent): the agent releases it and the kubelet sees it Unhealthy; when
// it comes back (a PCI rescan) the agent opens it again and the kubelet sees
// it Healthy.
TEST_F(VfioEndToEndTest, ARemovedDeviceTurnsUnhealthyAtTheKubeletAndRecoversWhenItComesBack) {
  FakeKubelet kubelet(dir_ + "/kubelet", dir_ + "/kubelet/pod-resources.sock");
  ASSERT_TRUE(kubelet.Start().ok());
  StartPlugin();
  auto health_is = [](const std::string& h) {
    return [h](const std::vector<AdvertisedDevice>& ds) { return ds.size() == 1 && ds[0].health == h; };
  };
  ASSERT_TRUE(kubelet.WaitForDevices("rpci.io/edu", health_is("Healthy"), absl::Seconds(60))) << Logs();
  const std::string bdf = agent::vfio::guest::FindFunction("0x1234", "0x11e8");
  ASSERT_FALSE(bdf.empty());
  const absl::Time removed = absl::Now();
  std::thread remove([&] { std::ofstream("/sys/bus/pci/devices/" + bdf + "/remove") << "1\n"; });
  const bool unhealthy = kubelet.WaitForDevices("rpci.io/edu", health_is("Unhealthy"), absl::Seconds(60));
  remove.join();  // returns once the agent released the function
  ASSERT_TRUE(unhealthy) << Logs();
  std::printf("edu: removal -> Unhealthy at the kubelet in %.0f ms\n", absl::ToDoubleMilliseconds(absl::Now() - removed));
  const absl::Time rescanned = absl::Now();
  std::ofstream("/sys/bus/pci/rescan") << "1\n";
  ASSERT_TRUE(kubelet.WaitForDevices("rpci.io/edu", health_is("Healthy"), absl::Seconds(60))) << Logs();
  std::printf("edu: rescan -> Healthy at the kubelet in %.0f ms\n",
              absl::ToDoubleMilliseconds(absl::Now() - rescanned));
  plugin_.reset();
  kubelet.Stop();
}

}  // namespace
}  // namespace rpci::testing
