// Runs inside the test machine (//tests/vm:verbs_e2e_test): rpci end to end
// over RDMA verbs. Soft-RoCE (rdma_rxe) on each end of a veth pair, every
// component a real process with mTLS. The two hosts are the two veth ends in
// the initial network namespace with policy routing (RocePair in
// soft_roce.h: Linux 6.1's rxe only receives there), so all traffic between
// them, gRPC and RDMA, crosses the veth link:
//   host a (device server): rpci-controller (local store), rpci-agent with
//     two rpci-emu devices, data path verbs;ofi_rxm on host a's rxe device;
//   host b (compute node): rpci-plugin, the fake kubelet and the pod's
//     container (its own mount namespace and /dev: exactly Allocate's
//     devices, mounts and environment) running examples/emu_jobs through
//     librpci over verbs;ofi_rxm on host b's rxe device.
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/cert_authority.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/subprocess.h"
#include "tests/vm/soft_roce.h"

namespace rpci::testing {
namespace {

constexpr int kControllerPort = 7560, kControllerHttp = 7561, kAgentPort = 7550, kAgentHttp = 7551;
constexpr char kVerbs[] = "verbs;ofi_rxm";

std::string Abs(const std::string& runfile) { return std::filesystem::absolute(runfile).string(); }

// The first JSON line of `text` that has `key` (and, with `msg`, that msg).
nlohmann::json FindLine(const std::string& text, const std::string& key, const std::string& msg = "") {
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(text, '\n'))) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains(key)) continue;
    if (msg.empty() || j.value("msg", "") == msg) return j;
  }
  return nlohmann::json();
}

std::string UverbsOf(const std::string& nic) {
  for (const auto& e : std::filesystem::directory_iterator("/sys/class/infiniband_verbs")) {
    std::ifstream in(e.path() / "ibdev");
    std::string name;
    in >> name;
    if (name == nic) return "/dev/infiniband/" + e.path().filename().string();
  }
  return "";
}

class VerbsEndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/rpci-vm-verbs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* d : {"controller", "agent", "kubelet", "plugin-state", "container", "cdi", "logs", "certs"}) {
      std::filesystem::create_directories(dir_ + "/" + d);
    }
    absl::StatusOr<RocePair> pair = RocePair::Create(96);
    ASSERT_TRUE(pair.ok()) << pair.status();
    pair_.emplace(std::move(*pair));
    controller_address_ = absl::StrCat(pair_->addr(0), ":", kControllerPort);
    MakeCertificates();
    StartController();
    StartAgent();
  }
  void TearDown() override {
    plugin_.reset();
    agent_.reset();
    controller_.reset();
    if (HasFailure()) std::printf("%s", Logs().c_str());
    pair_.reset();
  }

  // mTLS as tools/certs makes it: one CA, a certificate per component.
  void MakeCertificates() {
    absl::StatusOr<CertAuthority> ca = CertAuthority::Create("rpci-vm-verbs-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    for (const auto& [name, stem] : {std::pair<std::string, std::string>{"controller", "controller"},
                                     {"agent:vm-device-server", "agent"},
                                     {"plugin:vm-compute-node", "plugin"}}) {
      absl::StatusOr<TlsMaterial> tls = ca->Issue(name, {}, {pair_->addr(0)});
      ASSERT_TRUE(tls.ok()) << tls.status();
      ASSERT_TRUE(CertAuthority::WriteFiles(*tls, dir_ + "/certs", stem).ok());
    }
  }
  std::vector<std::string> TlsFlags(const std::string& stem) const {
    const std::string c = dir_ + "/certs/";
    return {"--tls-cert=" + c + stem + ".crt", "--tls-key=" + c + stem + ".key", "--tls-ca=" + c + "ca.crt"};
  }

  // Host a's and b's processes share the namespace; each binds its address.
  std::unique_ptr<Subprocess> Start(int /*host*/, const std::string& name, const std::vector<std::string>& argv) {
    const std::string log = dir_ + "/logs/" + name;
    return std::make_unique<Subprocess>(argv, log + ".out", log + ".err");
  }
  void StartController() {
    std::vector<std::string> argv = {Abs("controller/rpci-controller"), "--store=local",
                                     "--state-dir=" + dir_ + "/controller", "--listen=" + controller_address_,
                                     absl::StrCat("--http-listen=", pair_->addr(0), ":", kControllerHttp),
                                     "--reconcile-interval-ms=100", "--default-spares=2", "--log-level=warn"};
    for (const std::string& f : TlsFlags("controller")) argv.push_back(f);
    controller_ = Start(0, "controller", argv);
  }
  void StartAgent() {
    const std::string c = dir_ + "/certs/";
    std::ofstream(dir_ + "/agent.yaml")
        << "node: vm-device-server\n"
        << "controller: {address: \"" << controller_address_ << "\"}\n"
        << "tls: {cert: " << c << "agent.crt, key: " << c << "agent.key, ca: " << c << "ca.crt}\n"
        << "session: {listen: \"" << pair_->addr(0) << ":" << kAgentPort << "\", advertise: \"" << pair_->addr(0) << ":"
        << kAgentPort << "\", state_dir: " << dir_ << "/agent}\n"
        << "fabric: {provider: \"" << kVerbs << "\", address: " << pair_->addr(0) << "}\n"
        << "emu:\n  - {pool: emu, count: 2, dma_size: 8388608}\n"
        // QEMU's edu through VFIO (bound by the agent through driver_override).
        << (with_edu_ ? "inventory: {vfio: true, vfio_dma_size: 1048576}\n"
                        "export:\n  rules:\n    - {pool: edu, vendor: 0x1234, device: 0x11e8}\n"
                      : "")
        << "http: {listen: \"" << pair_->addr(0) << ":" << kAgentHttp << "\"}\n"
        << "log_level: info\n";
    agent_ = Start(0, "agent", {Abs("agent/rpci-agent"), "serve", "--config=" + dir_ + "/agent.yaml"});
  }
  void StartPlugin() {
    std::vector<std::string> argv = {
        Abs("plugin/rpci-plugin"), "--node=vm-compute-node", "--controller=" + controller_address_,
        std::string("--pools=") + (with_edu_ ? "emu,edu" : "emu"),
        "--plugin-dir=" + dir_ + "/kubelet", "--pod-resources-socket=" + dir_ + "/kubelet/pod-resources.sock",
        "--cdi-dir=" + dir_ + "/cdi", "--state-dir=" + dir_ + "/plugin-state",
        "--container-dir=" + dir_ + "/container", "--usage-interval-seconds=1",
        // Under TCG a container may start seconds after Allocate; the
        // session must not be released as never-listed before that.
        "--release-grace-seconds=60",
        "--health-addr=", "--log-level=info"};
    for (const std::string& f : TlsFlags("plugin")) argv.push_back(f);
    plugin_ = Start(1, "plugin", argv);
  }

  // The fake kubelet admits a pod asking for one `resource` and runs
  // `workload` as its isolated container; started, not waited for.
  std::unique_ptr<Subprocess> StartPod(const std::string& name, const std::vector<std::string>& workload,
                                       const std::string& resource = "rpci.io/emu") {
    std::vector<std::string> argv = {Abs("tests/kubelet/fake_kubelet_main"), "--plugin-dir=" + dir_ + "/kubelet",
                                     "--pod-resources-socket=" + dir_ + "/kubelet/pod-resources.sock",
                                     "--pod=vm/" + name, "--resource=" + resource, "--count=1",
                                     "--wait-seconds=120", "--isolate-container", "--"};
    argv.insert(argv.end(), workload.begin(), workload.end());
    auto kubelet = Start(1, "kubelet-" + name, argv);
    for (int i = 0; i < 200 && !std::filesystem::exists(dir_ + "/kubelet/kubelet.sock"); ++i) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    if (plugin_ == nullptr) StartPlugin();
    return kubelet;
  }
  // Under TCG on a loaded machine the plugin's first session reservation can
  // miss its gRPC deadline; a failed admission is tried again, as a kubelet does.
  std::unique_ptr<Subprocess> RunPod(const std::string& name, const std::vector<std::string>& workload,
                                     const std::string& resource = "rpci.io/emu") {
    std::unique_ptr<Subprocess> kubelet;
    for (int attempt = 0; attempt < 3; ++attempt) {
      kubelet = StartPod(attempt == 0 ? name : absl::StrCat(name, "-", attempt), workload, resource);
      kubelet->Wait(absl::Seconds(240));
      if (kubelet->err().find("pod admission failed") == std::string::npos) break;
      std::printf("%s: pod admission failed (attempt %d), trying again\n", name.c_str(), attempt + 1);
    }
    return kubelet;
  }

  // A counter from the agent's /metrics (summed over labels); -1 unreadable.
  double AgentCounter(const std::string& name) {
    absl::StatusOr<std::string> text = CommandOutput(
        {"curl", "-sS", "--max-time", "5", absl::StrCat("http://", pair_->addr(0), ":", kAgentHttp, "/metrics")});
    if (!text.ok()) return -1;
    double sum = 0;
    for (const std::string& line : std::vector<std::string>(absl::StrSplit(*text, '\n'))) {
      if (line.rfind(name, 0) != 0) continue;
      sum += std::atof(line.substr(line.rfind(' ') + 1).c_str());
    }
    return sum;
  }

  std::string Logs() const {
    std::string all;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/logs")) {
      all += absl::StrCat("--- ", e.path().filename().string(), ":\n", ReadWholeFile(e.path().string()));
    }
    return all;
  }

  bool with_edu_ = false;  // the agent also exports QEMU's edu through VFIO
  std::string dir_, controller_address_;
  std::optional<RocePair> pair_;
  std::unique_ptr<Subprocess> controller_, agent_, plugin_;
};

// Allocate -> attach -> jobs with checked results -> release, over verbs;
// the container gets the uverbs device of host b's rxe NIC (the one on the
// route to the agent) and rdma_cm, and no other device node.
TEST_F(VerbsEndToEndTest, PodOpensItsNicAndComputesOverVerbs) {
  auto pod = RunPod("jobs", {Abs("examples/emu_jobs"), "--rounds=4"});
  ASSERT_EQ(pod->Wait(absl::ZeroDuration()), 0) << pod->out() << pod->err();
  nlohmann::json s = FindLine(pod->out(), "ok");
  ASSERT_TRUE(s.is_object()) << pod->out();
  EXPECT_TRUE(s["ok"].get<bool>()) << s.dump();
  EXPECT_EQ(s["jobs"], 12);  // three jobs a round
  std::printf("verbs emu_jobs: %s\n", s.dump().c_str());

  nlohmann::json admitted = FindLine(pod->err(), "device_nodes", "pod admitted");
  ASSERT_TRUE(admitted.is_object()) << pod->err();
  EXPECT_EQ(admitted["envs"]["RPCI_0_FABRIC_PROVIDER"], kVerbs);
  std::vector<std::string> nodes;
  for (const auto& d : admitted["device_nodes"]) {
    nodes.push_back(d["host"]);
    EXPECT_EQ(d["container"], d["host"]);
    EXPECT_EQ(d["permissions"], "rw");
  }
  const std::string uverbs_b = UverbsOf(pair_->nic(1));
  ASSERT_FALSE(uverbs_b.empty());
  EXPECT_EQ(nodes, (std::vector<std::string>{uverbs_b, "/dev/infiniband/rdma_cm"}));
  // The CDI spec names the same nodes.
  bool cdi_has_nodes = false;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/cdi")) {
    cdi_has_nodes = cdi_has_nodes || ReadWholeFile(e.path().string()).find(uverbs_b) != std::string::npos;
  }
  EXPECT_TRUE(cdi_has_nodes || std::filesystem::is_empty(dir_ + "/cdi"));  // released pods' specs are removed
  // The agent's data path is verbs on host a's NIC.
  EXPECT_NE(ReadWholeFile(dir_ + "/logs/agent.err").find(kVerbs), std::string::npos);
  // Release: the workload's close detached its session at the agent.
  EXPECT_NE(ReadWholeFile(dir_ + "/logs/agent.err").find("session detached by its workload"), std::string::npos);
}

// The container's /dev holds exactly Allocate's devices (and a runtime's
// defaults): without them the workload cannot open the NIC, so the same
// workload with the uverbs device hidden fails, naming the fabric.
TEST_F(VerbsEndToEndTest, ContainerSeesOnlyAllocatesDeviceNodes) {
  auto pod = RunPod("ls", {"/bin/ls", "/dev", "/dev/infiniband"});
  ASSERT_EQ(pod->Wait(absl::ZeroDuration()), 0) << pod->out() << pod->err();
  const std::string uverbs_a = std::filesystem::path(UverbsOf(pair_->nic(0))).filename();
  const std::string uverbs_b = std::filesystem::path(UverbsOf(pair_->nic(1))).filename();
  EXPECT_NE(pod->out().find(uverbs_b), std::string::npos) << pod->out();
  EXPECT_EQ(pod->out().find(uverbs_a), std::string::npos) << "host a's NIC must not be in the container: " << pod->out();
  EXPECT_NE(pod->out().find("rdma_cm"), std::string::npos) << pod->out();
  EXPECT_EQ(pod->out().find("vfio"), std::string::npos) << pod->out();
}

// The wire between the hosts is cut for 5 s while the workload runs jobs
// (every packet either end sends is dropped; both ends, their rxe ports and
// routes stay up, as when a cable or switch between two hosts fails): the
// session reconnects to the agent's fresh endpoint and every job's result is
// still correct. 5 s is longer than the client's silence probe can wait
// (op_timeout of silence, then a probe read with op_timeout): a client that
// sends nothing during a shorter cut (waiting for a job's completion) rides
// it out on the queue pair's own retransmissions, without reconnecting, as
// a 1 s cut did in CI (reconnects 0, 450 of 450 jobs correct). Not `ip link set down` on the veths: Linux 6.1's rxe then
// fails the CM's sends with no route, and its CM queue pair (QP1) never
// receives again, so no new connection to or from that device completes
// (docs/verbs.md, "Link flaps on Soft-RoCE").
TEST_F(VerbsEndToEndTest, WorkloadSurvivesACutWire) {
  std::unique_ptr<Subprocess> pod;
  bool running = false;
  // Under TCG on a loaded machine the plugin's first session reservation, or
  // the workload's first attach, can miss its deadline; the pod is tried
  // again, as a kubelet restarts a failed container.
  for (int attempt = 0; attempt < 3 && !running; ++attempt) {
    pod = StartPod(absl::StrCat("cut-", attempt), {Abs("examples/emu_jobs"), "--rounds=150"});
    // Wait until jobs complete on the device (attached over verbs, running).
    for (int i = 0; i < 240 && !running && pod->Wait(absl::ZeroDuration()) == -1; ++i) {
      absl::SleepFor(absl::Milliseconds(500));
      running = AgentCounter("rpci_session_completions_total") >= 2;
    }
    if (running) break;
    const bool retry = pod->err().find("pod admission failed") != std::string::npos ||
                       pod->err().find("emu_jobs: open:") != std::string::npos;
    if (!retry) break;
    std::printf("cut: pod did not start its jobs (attempt %d), trying again\n", attempt + 1);
  }
  ASSERT_TRUE(running) << "no jobs completed within 120 s\n" << pod->out() << pod->err() << Logs();
  ASSERT_EQ(pod->Wait(absl::ZeroDuration()), -1) << "finished before the cut; raise --rounds\n" << pod->out();
  const absl::Time cut = absl::Now();
  ASSERT_TRUE(pair_->CutWire(absl::Seconds(5)).ok());
  std::printf("cut: wire cut at %s, whole again after %.1f s\n", absl::FormatTime(cut).c_str(),
              absl::ToDoubleSeconds(absl::Now() - cut));
  ASSERT_EQ(pod->Wait(absl::Seconds(300)), 0) << pod->out() << pod->err();
  nlohmann::json s = FindLine(pod->out(), "ok");
  ASSERT_TRUE(s.is_object()) << pod->out();
  EXPECT_TRUE(s["ok"].get<bool>()) << s.dump();
  EXPECT_EQ(s["jobs"], 450);  // three jobs a round
  EXPECT_GE(s["reconnects"].get<int>(), 1) << s.dump();
  std::printf("verbs cut wire: %s; agent: completion push failures %.0f\n", s.dump().c_str(),
              AgentCounter("rpci_session_completion_push_failures_total"));
  // Every frame of the workload's reached the agent once and in order: none
  // was refused as replayed or out of sequence (docs/verbs.md, "Frames
  // reordered after a reconnect").
  EXPECT_EQ(AgentCounter("rpci_session_refused_total{reason=\"replay\"}"), 0) << Logs();
  EXPECT_EQ(AgentCounter("rpci_session_refused_total{reason=\"bad_sequence\"}"), 0) << Logs();
}

// Registration pins memory: a container without CAP_IPC_LOCK and with a
// locked-memory limit too small for the session fails with an error that
// names RLIMIT_MEMLOCK and the fix.
TEST_F(VerbsEndToEndTest, TooLittleMemlockIsNamedInTheWorkloadsError) {
  auto pod = RunPod("memlock", {"/usr/bin/prlimit", "--memlock=65536:65536", "/usr/bin/setpriv",
                                "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", Abs("examples/emu_jobs"),
                                "--rounds=1"});
  EXPECT_NE(pod->Wait(absl::ZeroDuration()), 0) << pod->out();
  EXPECT_NE(pod->err().find("RLIMIT_MEMLOCK"), std::string::npos) << pod->err();
  EXPECT_NE(pod->err().find("docs/operators/install.md"), std::string::npos) << pod->err();
}

// The same cluster with QEMU's edu exported through VFIO next to rpci-emu.
class VerbsEduTest : public VerbsEndToEndTest {
 protected:
  static void SetUpTestSuite() { ASSERT_EQ(std::system("modprobe vfio-pci"), 0); }
  void SetUp() override {
    with_edu_ = true;
    VerbsEndToEndTest::SetUp();
  }
};

// A real device over verbs: examples/edu (factorial, a DMA round trip through
// the IOMMU, the DMA's completion interrupt without a kick) through librpci
// on verbs;ofi_rxm, in the pod's container on host b, against edu bound to
// vfio-pci by the agent on host a.
TEST_F(VerbsEduTest, EduThroughVfioComputesOverVerbs) {
  auto pod = RunPod("edu", {Abs("examples/edu/edu")}, "rpci.io/edu");
  ASSERT_EQ(pod->Wait(absl::ZeroDuration()), 0) << pod->out() << pod->err();
  nlohmann::json s = FindLine(pod->out(), "ok");
  ASSERT_TRUE(s.is_object()) << pod->out();
  EXPECT_TRUE(s["ok"].get<bool>()) << s.dump();
  EXPECT_EQ(s["ident"], "0x010000ed");
  std::printf("verbs edu: %s\n", s.dump().c_str());
  nlohmann::json admitted = FindLine(pod->err(), "device_nodes", "pod admitted");
  ASSERT_TRUE(admitted.is_object()) << pod->err();
  EXPECT_EQ(admitted["envs"]["RPCI_0_FABRIC_PROVIDER"], kVerbs);
}

}  // namespace
}  // namespace rpci::testing
