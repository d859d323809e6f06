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
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "agent/vfio/bind.h"
#include "agent/vfio/testing/guest_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/deployment.h"
#include "tests/harness/job_summary.h"
#include "tests/harness/netns.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_certs.h"
#include "tests/kubelet/fake_kubelet.h"

namespace rpci::testing {
namespace {

constexpr int kControllerPort = 7460, kControllerHttp = 7461, kAgentPort = 7450, kAgentHttp = 7451;


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
    deploy_ = DeploymentDir(dir_);
    ASSERT_TRUE(deploy_.Create().ok());
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
    return deploy_.Start(name, pair_->ExecIn(host, argv));
  }
  void StartController() {
    std::vector<std::string> argv =
        deploy_.LocalController(controller_address_, absl::StrCat(pair_->addr_a(), ":", kControllerHttp), "warn");
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
    agent_ = Start(0, "agent", {Runfile("agent/rpci-agent"), "serve", "--config=" + dir_ + "/agent.yaml"});
  }
  void StartPlugin() {
    std::vector<std::string> argv = deploy_.Plugin("vm-compute-node", controller_address_, "edu,nvme,vga", "warn");
    // An allocation pod-resources has not listed yet is released after this
    // grace. Under TCG on a loaded machine an NVMe Allocate took over a
    // second, and a 1 s grace released the pod's session (its key file gone)
    // before the fake kubelet listed the pod. Listed pods are handed over as
    // soon as they go, whatever the grace.
    argv.push_back("--release-grace-seconds=15");
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
      kubelet = Start(1, absl::StrCat("kubelet-", name, "-", attempt),
                      deploy_.Kubelet(absl::StrCat("vm/", name, "-", attempt), resource, 90, workload));
      deploy_.WaitForKubelet(absl::Seconds(10));
      if (plugin_ == nullptr) StartPlugin();
      kubelet->Wait(absl::Seconds(150));
      if (kubelet->err().find("pod admission failed") == std::string::npos) break;
      std::printf("%s: pod admission failed (attempt %d), trying again\n", name.c_str(), attempt + 1);
    }
    return kubelet;
  }

  std::string Logs() const { return deploy_.Logs(); }

  std::string dir_, controller_address_;
  DeploymentDir deploy_;
  TestCerts certs_;
  std::optional<VethPair> pair_;
  std::unique_ptr<Subprocess> controller_, agent_, plugin_;
};

TEST_F(VfioEndToEndTest, EduThroughVfioComputesDmasAndInterruptsWithoutKicks) {
  auto pod = RunPod("edu", "rpci.io/edu", {Runfile("examples/edu/edu")});
  ASSERT_EQ(pod->Wait(absl::ZeroDuration()), 0) << pod->out() << pod->err();
  nlohmann::json s = JobSummary(pod->out());
  ASSERT_TRUE(s.is_object()) << pod->out();
  EXPECT_TRUE(s["ok"].get<bool>()) << s.dump();
  EXPECT_EQ(s["ident"], "0x010000ed");
  EXPECT_EQ(s["device"], "vm-device-server-" + absl::StrReplaceAll(agent::vfio::guest::FindFunction("0x1234", "0x11e8"), {{":", "-"}, {".", "-"}}));
  std::printf("edu: DMA completion interrupt after %.1f ms\n", s["irq_ms"].get<double>());
}

TEST_F(VfioEndToEndTest, NvmeThroughVfioIdentifiesAndRoundTripsBlocks) {
  auto pod = RunPod("nvme", "rpci.io/nvme", {Runfile("examples/nvme/nvme"), "--lba=16", "--blocks=2"});
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
  auto kubelet = Start(1, "kubelet-kill",
                       deploy_.Kubelet("vm/nvme-kill", "rpci.io/nvme", 90,
                                       {Runfile("examples/nvme/nvme"), "--pause-ms=8000"}));
  deploy_.WaitForKubelet(absl::Seconds(10));
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
  FakeKubelet kubelet(deploy_.kubelet_dir(), deploy_.pod_resources_socket());
  ASSERT_TRUE(kubelet.Start().ok());
  StartPlugin();
  ASSERT_TRUE(kubelet.WaitForDevices("rpci.io/vga", AllHealth(1, "Healthy"), absl::Seconds(60))) << Logs();
  absl::StatusOr<AdmittedContainer> pod = kubelet.AdmitPod("vm", "vga-a", "main", "rpci.io/vga", 1);
  for (int attempt = 1; attempt < 3 && !pod.ok(); ++attempt) {  // as RunPod: a kubelet tries again
    std::printf("vga: pod admission failed (%s), trying again\n", std::string(pod.status().message()).c_str());
    pod = kubelet.AdmitPod("vm", "vga-a", "main", "rpci.io/vga", 1);
  }
  ASSERT_TRUE(pod.ok()) << pod.status() << Logs();
  kubelet.RemovePod("vm", "vga-a");
  const absl::Time removed = absl::Now();
  ASSERT_TRUE(kubelet.WaitForDevices("rpci.io/vga", AllHealth(1, "Unhealthy"), absl::Seconds(60))) << Logs();
  std::printf("vga: pod removed -> Unhealthy at the kubelet in %.0f ms\n",
              absl::ToDoubleMilliseconds(absl::Now() - removed));
  plugin_.reset();
  kubelet.Stop();
}

// Scrub between tenants through sessions (docs/sessions.md, "Scrub between
// tenants"): tenant A's pod leaves patterns in a device's registers and over
// its whole DMA space; after its release (the agent's reset and scrub, seen
// in its metrics) tenant B's pod on the same device reads them back.
class TenantScrubTest : public VfioEndToEndTest {
 protected:
  static constexpr uint64_t kDmaSize = 1 << 20;  // the agent's inventory.vfio_dma_size

  // Runs tests/vm/tenant_probe in a pod on `resource` and returns its summary.
  nlohmann::json Probe(const std::string& pod, const std::string& resource, std::vector<std::string> ops) {
    ops.insert(ops.begin(), Runfile("tests/vm/tenant_probe"));
    auto kubelet = RunPod(pod, resource, ops);
    EXPECT_EQ(kubelet->Wait(absl::ZeroDuration()), 0) << kubelet->out() << kubelet->err();
    nlohmann::json s = JobSummary(kubelet->out());
    EXPECT_TRUE(s.is_object() && s["ok"].get<bool>()) << kubelet->out() << kubelet->err();
    EXPECT_EQ(s["dma_size"], kDmaSize);
    return s;
  }
  // The result of the n-th `op` in a probe's summary (a null JSON when absent).
  static nlohmann::json Result(const nlohmann::json& s, const std::string& op, int n = 0) {
    for (const nlohmann::json& r : s.value("results", nlohmann::json::array())) {
      if (r["op"] == op && n-- == 0) return r;
    }
    return nlohmann::json();
  }
  static std::string Value(const nlohmann::json& s, const std::string& op) {
    return Result(s, op).value("value", "absent");
  }
  // The plugin hands a pod's device back when the kubelet's pod-resources
  // stops listing the pod; with RunPod's kubelet gone, a kubelet that lists
  // no pods is up until the agent reports `n` clean scrubs
  // (rpci_agent_device_scrubs_total).
  bool ReleaseAndWaitScrubs(int n) {
    FakeKubelet kubelet(deploy_.kubelet_dir(), deploy_.pod_resources_socket());
    if (!kubelet.Start().ok()) return false;
    const bool scrubbed = WaitScrubs(n);
    kubelet.Stop();
    return scrubbed;
  }
  bool WaitScrubs(int n) {
    const std::string url = absl::StrCat("http://", pair_->addr_a(), ":", kAgentHttp, "/metrics");
    const std::string want = absl::StrCat("rpci_agent_device_scrubs_total{result=\"clean\"} ", n);
    for (int i = 0; i < 120; ++i) {
      auto curl = Start(0, "metrics", {"curl", "-sf", "--max-time", "2", url});
      if (curl->Wait(absl::Seconds(5)) == 0 && curl->out().find(want) != std::string::npos) return true;
      absl::SleepFor(absl::Milliseconds(500));
    }
    return false;
  }
};

// edu: tenant A runs edu's DMA engine at both ends of the IOVA window (device
// address 0 into the device's buffer, the buffer back to dma_size - 2 KiB,
// where it lands in the pulled DMA space), leaves patterns in the liveness,
// factorial and DMA registers and 0x5a over the whole DMA space. Tenant B
// reads zeros over its whole DMA space. QEMU's edu model has no reset
// handler, so its register file and its 4 KiB buffer keep tenant A's values
// over the function reset; the test shows that too (a real function with an
// FLR that clears its state would not). edu's 64-bit DMA registers are read
// by their low halves: the agent fills the mirror 4 bytes at a time and edu
// answers a 4-byte read of a high half with all ones.
TEST_F(TenantScrubTest, TenantBOnEduReadsAZeroedDmaSpaceButEduKeepsItsRegistersOverAReset) {
  const std::string top = absl::StrFormat("0x%x", kDmaSize - 2048);
  nlohmann::json a = Probe("tenant-a", "rpci.io/edu",
                           {"fill:0xa5", "w64:0:0x80:0", "w64:0:0x88:0x40000", "w64:0:0x90:2048", "w64:0:0x98:1",
                            "sleep:1500", "fill:0", "w64:0:0x80:0x40000", "w64:0:0x88:" + top, "w64:0:0x98:3",
                            "sleep:1500", "dma", "w32:0:0x4:0x12345678", "w32:0:0x8:10", "sleep:500",
                            "w64:0:0x80:0xa0a0a0a0", "w64:0:0x88:0xb0b0b0b0", "w64:0:0x90:0x7c", "fill:0x5a",
                            "r32:0:0x4", "r32:0:0x8", "r32:0:0x80", "r32:0:0x88", "r32:0:0x90", "dma"});
  // The device's addresses are offsets into the DMA space (docs/sessions.md, the IOVA window).
  EXPECT_EQ(Result(a, "dma")["nonzero"], 2048) << a.dump();
  EXPECT_EQ(Result(a, "dma")["first_nonzero"], top) << a.dump();
  EXPECT_EQ(Value(a, "r32:0:0x4"), "0xedcba987");  // edu stores the complement
  EXPECT_EQ(Value(a, "r32:0:0x8"), "0x375f00");    // 10!
  EXPECT_EQ(Value(a, "r32:0:0x80"), "0xa0a0a0a0");
  EXPECT_EQ(Result(a, "dma", 1)["nonzero"], kDmaSize) << a.dump();
  ASSERT_TRUE(ReleaseAndWaitScrubs(1)) << Logs();

  nlohmann::json b = Probe("tenant-b", "rpci.io/edu",
                           {"dma", "r32:0:0x0", "r32:0:0x4", "r32:0:0x8", "r32:0:0x80", "r32:0:0x88", "r32:0:0x90",
                            "w64:0:0x80:0x40000", "w64:0:0x88:0", "w64:0:0x90:2048", "w64:0:0x98:3", "sleep:1500",
                            "dma"});
  EXPECT_EQ(b["device"], a["device"]);
  EXPECT_EQ(Result(b, "dma")["nonzero"], 0) << b.dump();  // the whole DMA space, as the device sees it
  EXPECT_EQ(Value(b, "r32:0:0x0"), "0x10000ed");
  // What edu keeps (the model has no reset; its power-on values are 0).
  EXPECT_EQ(Value(b, "r32:0:0x4"), "0xedcba987");
  EXPECT_EQ(Value(b, "r32:0:0x8"), "0x375f00");
  EXPECT_EQ(Value(b, "r32:0:0x80"), "0xa0a0a0a0");
  EXPECT_EQ(Value(b, "r32:0:0x88"), "0xb0b0b0b0");
  EXPECT_EQ(Value(b, "r32:0:0x90"), "0x7c");
  EXPECT_EQ(Result(b, "dma", 1)["nonzero"], 2048) << "edu's buffer holds tenant A's 0xa5: " << b.dump();
  std::printf("edu: tenant A %s\nedu: tenant B %s\n", a.dump().c_str(), b.dump().c_str());
}

// NVMe (FLR): tenant A enables the controller with admin queues in its DMA
// space and leaves 0xa5 over the whole DMA space; tenant B sees the
// controller disabled (CC 0, CSTS.RDY 0) and zeros over its whole DMA space.
// QEMU's NVMe model keeps AQA, ASQ and ACQ over the FLR; the test shows that.
TEST_F(TenantScrubTest, TenantBOnNvmeSeesAResetControllerAndAZeroedDmaSpace) {
  nlohmann::json a = Probe("tenant-a", "rpci.io/nvme",
                           {"fill:0xa5", "w32:0:0x24:0x000f000f", "w64:0:0x28:0x1000", "w64:0:0x30:0x2000",
                            "w32:0:0x14:0x00460001", "sleep:1000", "r32:0:0x14", "r32:0:0x1c", "dma"});
  EXPECT_EQ(Value(a, "r32:0:0x14"), "0x460001");
  EXPECT_EQ(Value(a, "r32:0:0x1c"), "0x1");  // CSTS.RDY
  EXPECT_EQ(Result(a, "dma")["nonzero"], kDmaSize) << a.dump();
  ASSERT_TRUE(ReleaseAndWaitScrubs(1)) << Logs();

  nlohmann::json b = Probe("tenant-b", "rpci.io/nvme",
                           {"r32:0:0x14", "r32:0:0x1c", "r32:0:0x24", "r64:0:0x28", "r64:0:0x30", "dma"});
  EXPECT_EQ(b["device"], a["device"]);
  EXPECT_EQ(Value(b, "r32:0:0x14"), "0x0");
  EXPECT_EQ(Value(b, "r32:0:0x1c"), "0x0");
  EXPECT_EQ(Result(b, "dma")["nonzero"], 0) << b.dump();
  // What QEMU's NVMe keeps over an FLR: the admin queue registers (their
  // addresses point into tenant A's DMA space, which is zero now).
  EXPECT_EQ(Value(b, "r32:0:0x24"), "0xf000f");
  EXPECT_EQ(Value(b, "r64:0:0x28"), "0x1000");
  EXPECT_EQ(Value(b, "r64:0:0x30"), "0x2000");
  std::printf("nvme: tenant A %s\nnvme: tenant B %s\n", a.dump().c_str(), b.dump().c_str());
}

// The kernel asks for edu back (its removal through sysfs, which waits for
// the agent): the agent releases it and the kubelet sees it Unhealthy; when
// it comes back (a PCI rescan) the agent opens it again and the kubelet sees
// it Healthy. Last: the other tests run on a function that was never removed.
// Its own suite, so that it runs after every other (gtest runs a suite's
// tests together, suites in order of definition).
class DeviceRemovalTest : public VfioEndToEndTest {};

TEST_F(DeviceRemovalTest, ARemovedDeviceTurnsUnhealthyAtTheKubeletAndRecoversWhenItComesBack) {
  FakeKubelet kubelet(deploy_.kubelet_dir(), deploy_.pod_resources_socket());
  ASSERT_TRUE(kubelet.Start().ok());
  StartPlugin();
  ASSERT_TRUE(kubelet.WaitForDevices("rpci.io/edu", AllHealth(1, "Healthy"), absl::Seconds(60))) << Logs();
  const std::string bdf = agent::vfio::guest::FindFunction("0x1234", "0x11e8");
  ASSERT_FALSE(bdf.empty());
  const absl::Time removed = absl::Now();
  std::thread remove([&] { std::ofstream("/sys/bus/pci/devices/" + bdf + "/remove") << "1\n"; });
  const bool unhealthy = kubelet.WaitForDevices("rpci.io/edu", AllHealth(1, "Unhealthy"), absl::Seconds(60));
  remove.join();  // returns once the agent released the function
  ASSERT_TRUE(unhealthy) << Logs();
  std::printf("edu: removal -> Unhealthy at the kubelet in %.0f ms\n", absl::ToDoubleMilliseconds(absl::Now() - removed));
  const absl::Time rescanned = absl::Now();
  std::ofstream("/sys/bus/pci/rescan") << "1\n";
  ASSERT_TRUE(kubelet.WaitForDevices("rpci.io/edu", AllHealth(1, "Healthy"), absl::Seconds(60))) << Logs();
  std::printf("edu: rescan -> Healthy at the kubelet in %.0f ms\n",
              absl::ToDoubleMilliseconds(absl::Now() - rescanned));
  plugin_.reset();
  kubelet.Stop();
}

}  // namespace
}  // namespace rpci::testing
