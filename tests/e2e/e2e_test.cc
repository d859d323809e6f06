// End to end, every component a real process, two hosts joined by a veth
// pair (tests/harness):
//   host a: rpci-controller (local store) and `rpci-agent serve` exporting two
//           rpci-emu devices, advertising host a's address for sessions and
//           the fabric;
//   host b: rpci-plugin and the kubelet (the fake kubelet binary, or the fake
//           kubelet library in this process: its sockets are unix sockets,
//           which do not care about network namespaces), and the pod's
//           container running examples/emu_jobs through librpci with exactly
//           the environment and mounts of the ContainerAllocateResponse.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/deployment.h"
#include "tests/harness/job_summary.h"
#include "tests/harness/netns.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_certs.h"
#include "tests/kubelet/fake_dra_kubelet.h"
#include "tests/kubelet/fake_kubelet.h"

namespace rpci::testing {
namespace {

constexpr char kResource[] = "rpci.io/emu";
// Each host is its own network namespace, so fixed ports cannot collide with
// anything else on the machine.
constexpr int kControllerPort = 7460, kControllerHttp = 7461, kAgentPort = 7450, kAgentHttp = 7451;
// Workloads run as a non-root user, as most pods do; the plugin gives session
// key files to kSessionGroup, which the pods list in supplementalGroups.
constexpr int kWorkloadUid = 65534, kSessionGroup = 4242;
// The certificates' common names (and the daemons' node names).
constexpr char kAgentName[] = "agent:e2e-device-server", kPluginName[] = "plugin:e2e-compute-node";

// Components log at warn unless RPCI_E2E_LOG_LEVEL says otherwise (debugging).
std::string LogLevel() {
  const char* level = getenv("RPCI_E2E_LOG_LEVEL");
  return level != nullptr ? level : "warn";
}

// `response` with device 0's session id replaced: what a workload that
// learnt another pod's session id would try.
v1beta1::ContainerAllocateResponse WithSessionId(v1beta1::ContainerAllocateResponse response,
                                                 const std::string& session_id) {
  for (const char* name : {"RPCI_SESSION_ID", "RPCI_0_SESSION_ID"}) (*response.mutable_envs())[name] = session_id;
  return response;
}

class EndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!CanUseNetworkNamespaces(&why)) GTEST_SKIP() << why;
    dir_ = MakeTempDir("rpci-e2e", TempDirUse::kSockets);
    deploy_ = DeploymentDir(dir_);
    ASSERT_TRUE(deploy_.Create().ok());
    std::filesystem::create_directories(dir_ + "/bin");
    // A non-root workload reaches its mounts and binary through these; the
    // key files keep their own modes.
    chmod(dir_.c_str(), 0711);
    std::filesystem::copy_file(Runfile("examples/emu_jobs"), dir_ + "/bin/emu_jobs");
    absl::StatusOr<VethPair> pair = VethPair::Create("e2e");
    ASSERT_TRUE(pair.ok()) << pair.status();
    pair_.emplace(std::move(*pair));
    agent_endpoint_ = absl::StrCat(pair_->addr_a(), ":", kAgentPort);
    controller_address_ = absl::StrCat(pair_->addr_a(), ":", kControllerPort);
    // mTLS as tools/certs makes it for local mode.
    absl::StatusOr<TestCerts> certs = MakeTestCerts(
        dir_ + "/certs", {"controller", kAgentName, kPluginName}, {pair_->addr_a()});
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
  }

  void TearDown() override {
    // Children first (they hold the namespaces' sockets), then the files.
    plugin_.reset();
    if (kubelet_) kubelet_->Stop();
    agent_.reset();
    controller_.reset();
    api_.reset();
    std::error_code ec;
    if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_, ec);
    if (HasFailure()) std::printf("logs kept in %s/logs\n", dir_.c_str());
  }

  std::unique_ptr<Subprocess> Start(int host, const std::string& name, const std::vector<std::string>& argv) {
    return deploy_.Start(name, pair_->ExecIn(host, argv));
  }

  void StartController() {
    std::vector<std::string> argv = deploy_.LocalController(
        controller_address_, absl::StrCat(pair_->addr_a(), ":", kControllerHttp), log_level_);
    for (const std::string& f : certs_.Flags("controller")) argv.push_back(f);
    controller_ = Start(0, "controller", argv);
  }
  void StartAgent() {
    std::ofstream(dir_ + "/agent.yaml") << "node: e2e-device-server\n"
                                        << "controller: {address: \"" << controller_address_
                                        << "\"}\n"
                                        << certs_.AgentConfig(kAgentName)
                                        << "session: {listen: \"0.0.0.0:" << kAgentPort << "\", advertise: \""
                                        << agent_endpoint_ << "\", state_dir: " << dir_ << "/agent}\n"
                                        << "fabric: {provider: \"tcp;ofi_rxm\", address: " << pair_->addr_a() << "}\n"
                                        << "emu:\n  - {pool: emu, count: 2, dma_size: 8388608}\n"
                                        << "http: {listen: \"" << pair_->addr_a() << ":" << kAgentHttp << "\"}\n"
                                        << "log_level: " << log_level_ << "\n";
    std::vector<std::string> argv = {"env"};
    argv.insert(argv.end(), agent_env_.begin(), agent_env_.end());
    for (const std::string& a : {Runfile("agent/rpci-agent"), std::string("serve"), "--config=" + dir_ + "/agent.yaml"}) {
      argv.push_back(a);
    }
    agent_ = Start(0, "agent", argv);
  }
  // The test API server (CRDs from deploy/crds, namespace rpci-system) and
  // the controller on it (--store=kube), both in host a; `ns` is the
  // controller's install namespace.
  void StartKubeController(const std::string& ns) {
    std::vector<std::string> api_argv = {Runfile("tests/kube/api_server_main"), "--crds=" + Runfile("deploy/crds"),
                                         "--namespaces=rpci-system"};
    api_argv.insert(api_argv.end(), api_args_.begin(), api_args_.end());
    api_ = Start(0, "api-server", api_argv);
    for (int i = 0; i < 200 && api_url_.empty(); ++i) {
      const std::string out = api_->out();
      if (size_t at = out.find("serving "); at != std::string::npos && out.find('\n', at) != std::string::npos) {
        api_url_ = out.substr(at + 8, out.find('\n', at) - at - 8);
      }
      absl::SleepFor(absl::Milliseconds(25));
    }
    ASSERT_FALSE(api_url_.empty()) << api_->err();
    std::ofstream(dir_ + "/kubeconfig") << "apiVersion: v1\nkind: Config\ncurrent-context: e2e\n"
                                        << "contexts:\n- name: e2e\n  context: {cluster: c, user: u}\n"
                                        << "clusters:\n- name: c\n  cluster: {server: \"" << api_url_ << "\"}\n"
                                        << "users:\n- name: u\n  user: {token: \"e2e\"}\n";
    std::vector<std::string> argv = {
        Runfile("controller/rpci-controller"), "--store=kube", "--kubeconfig=" + dir_ + "/kubeconfig",
        "--namespace=" + ns, "--lease-namespace=rpci-system", "--listen=" + controller_address_,
        absl::StrCat("--http-listen=", pair_->addr_a(), ":", kControllerHttp), "--reconcile-interval-ms=100",
        "--default-spares=2", "--log-level=" + log_level_};
    for (const std::string& f : certs_.Flags("controller")) argv.push_back(f);
    controller_ = Start(0, "controller", argv);
  }
  // `method` on the test API server from inside host a; the answer's JSON
  // (null when it is not JSON).
  nlohmann::json Api(const std::string& method, const std::string& path, const nlohmann::json& body = nullptr) {
    std::vector<std::string> argv = {"curl", "-sS", "--max-time", "5", "-X", method, api_url_ + path};
    if (!body.is_null()) {
      for (const std::string& a : {std::string("-H"), std::string("Content-Type: application/json"),
                                   std::string("--data"), body.dump()}) {
        argv.push_back(a);
      }
    }
    auto curl = Start(0, "curl", argv);
    EXPECT_EQ(curl->Wait(absl::Seconds(10)), 0) << curl->err();
    return nlohmann::json::parse(curl->out(), nullptr, false);
  }
  // Polls `pred` on GET `path` for up to `timeout`; the last object seen.
  nlohmann::json WaitForObject(const std::string& path, const std::function<bool(const nlohmann::json&)>& pred,
                               absl::Duration timeout) {
    nlohmann::json o;
    for (const absl::Time deadline = absl::Now() + timeout; absl::Now() < deadline;
         absl::SleepFor(absl::Milliseconds(200))) {
      o = Api("GET", path);
      if (!o.is_discarded() && o.is_object() && pred(o)) return o;
    }
    return o;
  }

  void StartPlugin(const std::vector<std::string>& extra = {"--release-grace-seconds=1"}) {
    std::vector<std::string> argv = deploy_.Plugin("e2e-compute-node", controller_address_, plugin_pools_, log_level_);
    argv.push_back(absl::StrCat("--session-group=", kSessionGroup));
    for (const std::string& f : certs_.Flags(kPluginName)) argv.push_back(f);
    argv.insert(argv.end(), extra.begin(), extra.end());
    plugin_ = Start(1, "plugin", argv);
  }
  // Controller and agent in host a, a kubelet here (the fixture's, stopped
  // after the plugin at TearDown), the plugin in host b; returns the kubelet
  // once it sees both devices Healthy. `kube_ns` non-empty: the controller
  // runs on the test API server with that install namespace.
  FakeKubelet& StartWithKubeletInProcess(const std::string& kube_ns = "",
                                         const std::vector<std::string>& plugin_args = {"--release-grace-seconds=1"}) {
    kubelet_ = std::make_unique<FakeKubelet>(deploy_.kubelet_dir(), deploy_.pod_resources_socket());
    StartAround(*kubelet_, kube_ns, plugin_args);
    return *kubelet_;
  }
  void StartAround(FakeKubelet& kubelet, const std::string& kube_ns, const std::vector<std::string>& plugin_args) {
    if (kube_ns.empty()) {
      StartController();
    } else {
      StartKubeController(kube_ns);
      if (HasFatalFailure()) return;
    }
    StartAgent();
    ASSERT_TRUE(kubelet.Start().ok());
    StartPlugin(plugin_args);
    ASSERT_TRUE(kubelet.WaitForDevices(kResource, AllHealth(2, "Healthy"), absl::Seconds(30))) << Logs();
  }

  // Runs emu_jobs in host b as the container of `response` (its own mount
  // namespace and environment) as user kWorkloadUid, by default with the
  // session group as its pod's supplementalGroups; the finished process.
  std::unique_ptr<Subprocess> RunContainer(const std::string& name, const v1beta1::ContainerAllocateResponse& response,
                                           bool in_session_group = true) {
    const std::string file = dir_ + "/" + name + ".response";
    std::ofstream(file, std::ios::binary) << response.SerializeAsString();
    const std::string user = absl::StrCat("--user=", kWorkloadUid, ":", kWorkloadUid, ":",
                                          in_session_group ? std::to_string(kSessionGroup) : "");
    auto workload = Start(1, name,
                          {Runfile("tests/e2e/run_container"), "--response=" + file, user, "--", dir_ + "/bin/emu_jobs",
                           "--rounds=4"});
    workload->Wait(absl::Seconds(60));
    return workload;
  }

  // As RunContainer, for a workload that must succeed; its summary.
  nlohmann::json RunWorkload(const std::string& name, const v1beta1::ContainerAllocateResponse& response) {
    std::unique_ptr<Subprocess> workload = RunContainer(name, response);
    EXPECT_EQ(workload->Wait(absl::ZeroDuration()), 0) << workload->out() << workload->err();
    return JobSummary(workload->out());
  }

  // The agent's /metrics, fetched from inside its host.
  std::string AgentMetrics() {
    auto curl = Start(0, "agent-metrics",
                      {"curl", "-sS", "--max-time", "5", absl::StrCat("http://", pair_->addr_a(), ":", kAgentHttp, "/metrics")});
    EXPECT_EQ(curl->Wait(absl::Seconds(10)), 0) << curl->err();
    return curl->out();
  }

  // Everything the components and containers wrote.
  std::string AllOutput() const {
    std::string all;
    for (const auto& entry : std::filesystem::directory_iterator(dir_ + "/logs")) {
      all += ReadWholeFile(entry.path().string());
    }
    return all;
  }

  std::string Logs() const { return deploy_.Logs({"controller", "agent", "plugin", "api-server"}); }

  std::string log_level_ = LogLevel();
  std::string dir_;
  DeploymentDir deploy_;
  std::optional<VethPair> pair_;
  std::string agent_endpoint_, controller_address_;
  TestCerts certs_;
  std::unique_ptr<Subprocess> controller_, agent_, plugin_, api_;
  std::unique_ptr<FakeKubelet> kubelet_;  // StartWithKubeletInProcess
  std::string api_url_;
  std::vector<std::string> agent_env_;  // NAME=value for the agent's environment
  std::string plugin_pools_ = "emu";    // rpci-plugin --pools
  std::vector<std::string> api_args_;   // more api_server_main flags

  // The DRA path end to end in one resource.k8s.io / kubelet DRA version.
  void DraClaimLifecycle(const std::string& version);
};

// The fake kubelet binary admits a pod asking for rpci.io/emu: 1 and runs the
// example workload as its container: COPY and CRC32C jobs on the remote
// device give the results computed locally.
TEST_F(EndToEndTest, PodGetsARemoteEmuDeviceAndItsWorkloadComputesCorrectly) {
  StartController();
  StartAgent();
  auto kubelet = Start(1, "kubelet",
                       deploy_.Kubelet("e2e/emu-jobs", kResource, 30, {Runfile("examples/emu_jobs"), "--rounds=4"}));
  deploy_.WaitForKubelet(absl::Seconds(5));
  StartPlugin();
  ASSERT_EQ(kubelet->Wait(absl::Seconds(60)), 0) << kubelet->out() << kubelet->err() << Logs();

  nlohmann::json summary = JobSummary(kubelet->out());
  ASSERT_TRUE(summary.is_object()) << kubelet->out();
  EXPECT_TRUE(summary["ok"].get<bool>()) << summary.dump();
  EXPECT_EQ(summary["jobs"].get<int>(), 12);

  // What the container got: the agent's namespace address as the session
  // endpoint, and the key only through the mount.
  nlohmann::json admitted;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(kubelet->err(), '\n'))) {
    nlohmann::json e = nlohmann::json::parse(line, nullptr, false);
    if (!e.is_discarded() && e.is_object() && e.value("msg", "") == "pod admitted") admitted = e;
  }
  ASSERT_TRUE(admitted.is_object()) << kubelet->err();
  EXPECT_EQ(admitted["envs"]["RPCI_SESSION_ENDPOINT"], agent_endpoint_);
  EXPECT_EQ(summary["device"], admitted["devices"][0]);
  ASSERT_EQ(admitted["mounts"].size(), 1u);
  const std::string container_path = admitted["mounts"][0]["container"];
  EXPECT_EQ(container_path.rfind(dir_ + "/container/", 0), 0u) << container_path;
  EXPECT_TRUE(admitted["mounts"][0]["read_only"].get<bool>());
  const std::string key_file = admitted["envs"]["RPCI_SESSION_KEY_FILE"];
  EXPECT_EQ(key_file.rfind(container_path + "/", 0), 0u) << key_file;
  EXPECT_FALSE(std::filesystem::exists(key_file)) << "the container path must exist only inside the container";
}

// With the kubelet in this process: a kubelet restart is noticed and the
// plugin registers again in under a second, and the session allocated before
// it still runs the workload; SIGKILL of the agent turns the devices
// Unhealthy at the kubelet and its restart Healthy again, with the session
// reserved before the crash still usable.
TEST_F(EndToEndTest, KubeletRestartKeepsSessionsAndAgentLossIsNotSticky) {
  FakeKubelet& kubelet = StartWithKubeletInProcess();
  if (HasFatalFailure()) return;

  // Kubelet restart.
  absl::StatusOr<AdmittedContainer> first = kubelet.AdmitPod("e2e", "before-restart", "main", kResource, 1);
  ASSERT_TRUE(first.ok()) << first.status() << Logs();
  EXPECT_EQ(first->response.envs().at("RPCI_SESSION_ENDPOINT"), agent_endpoint_);
  const absl::Time restarted = absl::Now();
  ASSERT_TRUE(kubelet.Restart().ok());
  ASSERT_TRUE(kubelet.WaitForRegistration(kResource, 1, absl::Seconds(1))) << Logs();
  const absl::Duration reregistered = kubelet.registrations().front().at - restarted;
  std::printf("kubelet restart -> plugin registered again: %.1f ms\n", absl::ToDoubleMilliseconds(reregistered));
  EXPECT_LT(reregistered, absl::Seconds(1));
  ASSERT_TRUE(kubelet.WaitForDevices(kResource, AllHealth(2, "Healthy"), absl::Seconds(2)));
  EXPECT_TRUE(kubelet.PreStartContainer(kResource, first->device_ids).ok());
  nlohmann::json summary = RunWorkload("workload-after-restart", first->response);
  EXPECT_EQ(summary.value("ok", false), true) << summary.dump() << Logs();
  EXPECT_EQ(summary.value("device", ""), first->device_ids[0]);
  kubelet.RemovePod("e2e", "before-restart");

  // Agent loss and return.
  absl::StatusOr<AdmittedContainer> second = kubelet.AdmitPod("e2e", "across-agent-crash", "main", kResource, 1);
  ASSERT_TRUE(second.ok()) << second.status() << Logs();
  const std::string device = second->device_ids[0];
  agent_->Signal(SIGKILL);
  agent_->Wait(absl::Seconds(5));
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(kubelet.WaitForDevices(kResource, AllHealth(2, "Unhealthy"), absl::Seconds(5))) << Logs();
  std::printf("agent SIGKILL -> Unhealthy at the kubelet: %.0f ms\n", absl::ToDoubleMilliseconds(absl::Now() - killed));
  StartAgent();
  const absl::Time restarted_agent = absl::Now();
  ASSERT_TRUE(kubelet.WaitForDevices(kResource, HealthOf(device, "Healthy"), absl::Seconds(15))) << Logs();
  std::printf("agent restart -> Healthy at the kubelet: %.0f ms\n",
              absl::ToDoubleMilliseconds(absl::Now() - restarted_agent));
  EXPECT_TRUE(kubelet.PreStartContainer(kResource, second->device_ids).ok());
  summary = RunWorkload("workload-after-agent-restart", second->response);
  EXPECT_EQ(summary.value("ok", false), true) << summary.dump() << Logs();
  EXPECT_EQ(summary.value("device", ""), device);
  kubelet.RemovePod("e2e", "across-agent-crash");
}

// Two pods on one compute node, each with its own session on the same agent.
// Pod a's container knows its own key and the agent's address; given pod b's
// session id it is refused (and the refusal counted), b's key file does not
// exist in its mount namespace, and b's workload runs undisturbed.
TEST_F(EndToEndTest, APodCannotReachAnotherPodsSession) {
  FakeKubelet& kubelet = StartWithKubeletInProcess();
  if (HasFatalFailure()) return;
  absl::StatusOr<AdmittedContainer> a = kubelet.AdmitPod("e2e", "pod-a", "main", kResource, 1);
  absl::StatusOr<AdmittedContainer> b = kubelet.AdmitPod("e2e", "pod-b", "main", kResource, 1);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status() << Logs();
  ASSERT_NE(a->device_ids[0], b->device_ids[0]);
  const std::string b_session = b->response.envs().at("RPCI_SESSION_ID");
  const std::string b_key_file = b->response.envs().at("RPCI_SESSION_KEY_FILE");
  for (const v1beta1::Mount& m : a->response.mounts()) {
    EXPECT_EQ(b_key_file.rfind(m.container_path() + "/", 0), std::string::npos) << "a's mounts hold b's key";
  }

  // a's key presented for b's session.
  const v1beta1::ContainerAllocateResponse a_with_b_session = WithSessionId(a->response, b_session);
  std::unique_ptr<Subprocess> wrong_key = RunContainer("a-with-b-session", a_with_b_session);
  EXPECT_NE(wrong_key->Wait(absl::ZeroDuration()), 0) << wrong_key->out();
  EXPECT_NE(wrong_key->err().find("no valid proof of the session key"), std::string::npos) << wrong_key->err();
  const std::string metrics = AgentMetrics();
  EXPECT_NE(metrics.find("rpci_session_refused_total{reason=\"bad_proof\"} "), std::string::npos) << metrics;

  // b's key file named from a's container: b's mount is not there.
  v1beta1::ContainerAllocateResponse a_with_b_key = a_with_b_session;
  for (const char* name : {"RPCI_SESSION_KEY_FILE", "RPCI_0_SESSION_KEY_FILE"}) {
    (*a_with_b_key.mutable_envs())[name] = b_key_file;
  }
  std::unique_ptr<Subprocess> no_key = RunContainer("a-with-b-key-file", a_with_b_key);
  EXPECT_NE(no_key->Wait(absl::ZeroDuration()), 0) << no_key->out();
  EXPECT_NE(no_key->err().find(b_key_file), std::string::npos) << no_key->err();

  nlohmann::json summary = RunWorkload("pod-b", b->response);
  EXPECT_EQ(summary.value("ok", false), true) << summary.dump() << Logs();
  EXPECT_EQ(summary.value("device", ""), b->device_ids[0]);
  summary = RunWorkload("pod-a", a->response);
  EXPECT_EQ(summary.value("ok", false), true) << summary.dump() << Logs();
}

// Workloads run as a non-root user: one whose pod lists the plugin's session
// group reads its key and runs; one without it cannot read the key file
// (0640, root:session group) and says so.
TEST_F(EndToEndTest, ANonRootWorkloadReadsItsKeyOnlyThroughTheSessionGroup) {
  FakeKubelet& kubelet = StartWithKubeletInProcess();
  if (HasFatalFailure()) return;
  absl::StatusOr<AdmittedContainer> pod = kubelet.AdmitPod("e2e", "non-root", "main", kResource, 1);
  ASSERT_TRUE(pod.ok()) << pod.status() << Logs();
  std::unique_ptr<Subprocess> outsider = RunContainer("not-in-group", pod->response, /*in_session_group=*/false);
  EXPECT_NE(outsider->Wait(absl::ZeroDuration()), 0) << outsider->out();
  EXPECT_NE(outsider->err().find("Permission denied"), std::string::npos) << outsider->err();
  nlohmann::json summary = RunWorkload("in-group", pod->response);
  EXPECT_EQ(summary.value("ok", false), true) << summary.dump() << Logs();
}

// Every component logging at debug through attach, workloads, a wrong-key
// attempt and release: no session key, in hex or base64, appears in any log
// or container output.
TEST_F(EndToEndTest, SessionKeysNeverAppearInLogs) {
  log_level_ = "debug";
  FakeKubelet& kubelet = StartWithKubeletInProcess();
  if (HasFatalFailure()) return;
  std::vector<std::string> keys;
  std::vector<AdmittedContainer> pods;
  for (const char* name : {"pod-a", "pod-b"}) {
    absl::StatusOr<AdmittedContainer> pod = kubelet.AdmitPod("e2e", name, "main", kResource, 1);
    ASSERT_TRUE(pod.ok()) << pod.status() << Logs();
    const std::string hex(absl::StripAsciiWhitespace(
        ReadWholeFile(dir_ + "/plugin-state/" + pod->device_ids[0] + "/key")));
    ASSERT_EQ(hex.size(), 64u) << hex;
    keys.push_back(hex);
    keys.push_back(absl::Base64Escape(absl::HexStringToBytes(hex)));
    keys.push_back(absl::WebSafeBase64Escape(absl::HexStringToBytes(hex)));
    pods.push_back(*pod);
  }
  EXPECT_EQ(RunWorkload("pod-a", pods[0].response).value("ok", false), true) << Logs();
  const v1beta1::ContainerAllocateResponse a_with_b_session =
      WithSessionId(pods[0].response, pods[1].response.envs().at("RPCI_SESSION_ID"));
  EXPECT_NE(RunContainer("a-with-b-session", a_with_b_session)->Wait(absl::ZeroDuration()), 0);
  for (const char* name : {"pod-a", "pod-b"}) kubelet.RemovePod("e2e", name);
  // The plugin's usage sync (1 s here) releases the sessions of removed pods.
  for (int i = 0; i < 100 && std::filesystem::exists(dir_ + "/plugin-state/" + pods[0].device_ids[0]); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/plugin-state/" + pods[0].device_ids[0])) << Logs();
  plugin_.reset();
  agent_.reset();
  controller_.reset();
  kubelet.Stop();
  const std::string all = AllOutput();
  for (const AdmittedContainer& pod : pods) {
    const std::string id = pod.response.envs().at("RPCI_SESSION_ID");
    EXPECT_NE(all.find(id), std::string::npos) << "the logs should speak of session " << id;
  }
  for (const std::string& key : keys) {
    EXPECT_EQ(all.find(key), std::string::npos) << "session key " << key << " logged";
  }
}

// A container that exits is started again by the kubelet without Allocate,
// PreStartContainer before each start. The workload's close detaches, so
// every run attaches to the pod's session and computes correctly.
TEST_F(EndToEndTest, ContainerRestartsThreeTimesWithoutAllocateAndEveryRunComputesCorrectly) {
  FakeKubelet& kubelet = StartWithKubeletInProcess();
  if (HasFatalFailure()) return;
  absl::StatusOr<AdmittedContainer> pod = kubelet.AdmitPod("e2e", "restarts", "main", kResource, 1);
  ASSERT_TRUE(pod.ok()) << pod.status() << Logs();
  const int allocations = kubelet.allocate_calls();
  nlohmann::json summary = RunWorkload("run-0", pod->response);
  EXPECT_EQ(summary.value("ok", false), true) << summary.dump() << Logs();
  for (int run = 1; run <= 3; ++run) {
    absl::StatusOr<AdmittedContainer> again = kubelet.RestartContainer("e2e", "restarts", "main");
    ASSERT_TRUE(again.ok()) << "restart " << run << ": " << again.status() << Logs();
    summary = RunWorkload(absl::StrCat("run-", run), again->response);
    EXPECT_EQ(summary.value("ok", false), true) << "run " << run << ": " << summary.dump() << Logs();
    EXPECT_EQ(summary.value("device", ""), pod->device_ids[0]);
    EXPECT_EQ(summary.value("jobs", 0), 12);
  }
  EXPECT_EQ(kubelet.allocate_calls(), allocations) << "restarts must not need Allocate";
}

// Pod end -> device allocatable again: the kubelet deletes the pod (it
// leaves pod-resources), the plugin ends the session at its next
// pod-resources read and the device is Healthy and free for the next pod,
// which is admitted on it. With the default 30 s release grace (which only
// covers allocations pod-resources has not listed yet). Prints p50/p99.
TEST_F(EndToEndTest, PodEndHandsTheDeviceToTheNextPodWithoutAnUnhealthySpell) {
  FakeKubelet& kubelet = StartWithKubeletInProcess("", {"--release-grace-seconds=30", "--usage-interval-seconds=1"});
  if (HasFatalFailure()) return;
  std::string device = kubelet.Devices(kResource)[0].id;
  std::vector<double> ms;
  for (int i = 0; i < 20; ++i) {
    const std::string name = absl::StrCat("handover-", i);
    absl::StatusOr<AdmittedContainer> pod = kubelet.AdmitPodWithDevices("e2e", name, "main", kResource, {device});
    ASSERT_TRUE(pod.ok()) << "pod " << i << ": " << pod.status() << Logs();
    if (i == 0) {
      EXPECT_EQ(RunWorkload("handover-0", pod->response).value("ok", false), true) << Logs();
    }
    // The plugin has read pod-resources (each second) since the pod was
    // listed; the pod ends at a different phase of that second each time.
    absl::SleepFor(absl::Milliseconds(1100 + (i * 379) % 1000));
    const absl::Time ended = absl::Now();
    kubelet.RemovePod("e2e", name);
    const std::string session_dir = dir_ + "/plugin-state/" + device;
    bool unhealthy_seen = false;
    while (std::filesystem::exists(session_dir) && absl::Now() - ended < absl::Seconds(10)) {
      for (const AdvertisedDevice& d : kubelet.Devices(kResource)) unhealthy_seen |= d.id == device && d.health != "Healthy";
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_FALSE(std::filesystem::exists(session_dir)) << "session of pod " << i << " never released" << Logs();
    ASSERT_TRUE(kubelet.WaitForDevices(kResource, HealthOf(device, "Healthy"), absl::Seconds(5)));
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - ended));
    EXPECT_FALSE(unhealthy_seen) << "device advertised Unhealthy after pod " << i << " ended";
  }
  std::sort(ms.begin(), ms.end());
  std::printf("pod end -> device released and allocatable: p50 %.0f ms, p99 %.0f ms, max %.0f ms (n=%zu)\n",
              ms[ms.size() / 2], ms[(ms.size() * 99) / 100], ms.back(), ms.size());
  EXPECT_LT(ms.back(), 30000) << "not the 30 s release grace";
}

// On the test API server (which refuses writes into namespaces that do not
// exist, as kube-apiserver does): DeviceAttachments are written into the
// install namespace, name their pod once pod-resources lists it, carry
// session and write counters from the agent, keep the token in a Secret,
// and the DevicePool's status counts the devices.
TEST_F(EndToEndTest, AttachmentsLiveInTheInstallNamespaceAndNameTheirPod) {
  FakeKubelet& kubelet = StartWithKubeletInProcess("rpci-system");
  if (HasFatalFailure()) return;
  nlohmann::json pool = Api("POST", "/apis/rpci.io/v1alpha1/devicepools",
                            {{"apiVersion", "rpci.io/v1alpha1"},
                             {"kind", "DevicePool"},
                             {"metadata", {{"name", "emu"}}},
                             {"spec", {{"resourceName", "rpci.io/emu"}, {"sparesPerNode", 2}}}});
  ASSERT_EQ(pool.value("kind", ""), "DevicePool") << pool.dump();
  nlohmann::json wrong = Api("POST", "/apis/rpci.io/v1alpha1/devicepools",
                             {{"apiVersion", "rpci.io/v1alpha1"},
                              {"kind", "DevicePool"},
                              {"metadata", {{"name", "gpu"}}},
                              {"spec", {{"resourceName", "rpci.io/emu"}}}});
  EXPECT_EQ(wrong.value("code", 0), 422) << wrong.dump();

  absl::StatusOr<AdmittedContainer> pod = kubelet.AdmitPod("ml", "trainer-0", "train", kResource, 1);
  ASSERT_TRUE(pod.ok()) << pod.status() << Logs();
  nlohmann::json summary = RunWorkload("trainer-0", pod->response);
  EXPECT_EQ(summary.value("ok", false), true) << summary.dump() << Logs();
  const std::string device = pod->device_ids[0];
  nlohmann::json dev = Api("GET", "/apis/rpci.io/v1alpha1/pciedevices/" + device);
  const std::string grant = dev["status"].value("attachment", "");
  ASSERT_FALSE(grant.empty()) << dev.dump();
  // The agent heartbeats every 10 s: counters arrive within two of them.
  nlohmann::json att = WaitForObject(
      "/apis/rpci.io/v1alpha1/namespaces/rpci-system/deviceattachments/" + grant,
      [](const nlohmann::json& a) {
        return a["spec"].value("pod", "") == "trainer-0" && a["status"].value("writesApplied", 0) > 0;
      },
      absl::Seconds(30));
  EXPECT_EQ(att["spec"].value("podNamespace", ""), "ml") << att.dump();
  EXPECT_EQ(att["spec"].value("pod", ""), "trainer-0") << att.dump();
  EXPECT_EQ(att["spec"].value("container", ""), "train");
  EXPECT_EQ(att["status"].value("state", ""), "Attached");
  EXPECT_EQ(att["status"].value("sessionId", ""), pod->response.envs().at("RPCI_SESSION_ID"));
  EXPECT_GT(att["status"].value("writesApplied", 0), 0) << att.dump();
  EXPECT_FALSE(att["spec"].contains("token")) << att.dump();
  nlohmann::json secret = Api("GET", "/api/v1/namespaces/rpci-system/secrets/" + grant);
  EXPECT_EQ(secret.value("type", ""), "rpci.io/grant") << secret.dump();
  nlohmann::json counted = WaitForObject(
      "/apis/rpci.io/v1alpha1/devicepools/emu",
      [](const nlohmann::json& p) { return p.contains("status") && p["status"].value("attached", 0) == 1; },
      absl::Seconds(10));
  EXPECT_EQ(counted["status"].value("total", 0), 2) << counted.dump();
  EXPECT_EQ(counted["status"].value("attached", 0), 1) << counted.dump();
  EXPECT_EQ(counted["status"].value("assigned", 0), 1) << counted.dump();
}

// What a real cluster showed: the namespace the attachments go to does not
// exist. The pod's Allocate fails with the API server's words; every other
// write goes on (devices assigned and written, heartbeats accepted, the
// device not left attached to a grant without an attachment); once the
// namespace exists the next pod is admitted.
TEST_F(EndToEndTest, ARefusedAttachmentFailsOnlyItsClaimAndTheStoreKeepsWorking) {
  FakeKubelet& kubelet = StartWithKubeletInProcess("kubelet");
  if (HasFatalFailure()) return;
  absl::StatusOr<AdmittedContainer> refused = kubelet.AdmitPod("ml", "first", "main", kResource, 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("namespaces \"kubelet\" not found"), std::string::npos)
      << refused.status();
  nlohmann::json devices = Api("GET", "/apis/rpci.io/v1alpha1/pciedevices");
  ASSERT_EQ(devices["items"].size(), 2u) << devices.dump();
  for (const nlohmann::json& d : devices["items"]) {
    EXPECT_EQ(d["status"].value("assignedNode", ""), "e2e-compute-node") << d.dump();
    EXPECT_EQ(d["status"].value("attachment", ""), "") << "a device names a grant with no attachment";
  }
  // The refusal is reported on the device as a Warning Event.
  nlohmann::json events = WaitForObject(
      "/api/v1/namespaces/default/events",
      [](const nlohmann::json& list) {
        for (const nlohmann::json& e : list.value("items", nlohmann::json::array())) {
          if (e.value("reason", "") == "StoreRefused" && e.value("type", "") == "Warning") return true;
        }
        return false;
      },
      absl::Seconds(5));
  EXPECT_NE(events.dump().find("namespaces \\\"kubelet\\\" not found"), std::string::npos) << events.dump();
  // Heartbeats and health go on: the devices stay Healthy past an agent
  // heartbeat (10 s) and a node heartbeat.
  absl::SleepFor(absl::Seconds(11));
  EXPECT_TRUE(kubelet.WaitForDevices(kResource, AllHealth(2, "Healthy"), absl::Seconds(1))) << Logs();
  EXPECT_EQ(ReadWholeFile(dir_ + "/logs/agent.err").find("not registered"), std::string::npos);

  nlohmann::json ns = Api("POST", "/api/v1/namespaces",
                          {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "kubelet"}}}});
  ASSERT_EQ(ns.value("kind", ""), "Namespace") << ns.dump();
  absl::StatusOr<AdmittedContainer> admitted = kubelet.AdmitPod("ml", "second", "main", kResource, 1);
  ASSERT_TRUE(admitted.ok()) << admitted.status() << Logs();
  EXPECT_EQ(RunWorkload("second", admitted->response).value("ok", false), true) << Logs();
}

// The fabric listens where the operator says: the agent's endpoint in the
// range its environment gives libfabric (the chart's fabric.portRange), the
// workload's in the range the plugin hands the container
// (--fabric-port-range). The agent's host listens on nothing else than its
// session and HTTP ports (and the controller's, which shares the host here).
TEST_F(EndToEndTest, FabricListenersStayInTheConfiguredPortRanges) {
  agent_env_ = {"FI_TCP_PORT_LOW_RANGE=47100", "FI_TCP_PORT_HIGH_RANGE=47109"};
  FakeKubelet& kubelet = StartWithKubeletInProcess("", {"--release-grace-seconds=1", "--fabric-port-range=47200-47209"});
  if (HasFatalFailure()) return;
  absl::StatusOr<AdmittedContainer> pod = kubelet.AdmitPod("e2e", "ports", "main", kResource, 1);
  ASSERT_TRUE(pod.ok()) << pod.status() << Logs();
  EXPECT_EQ(pod->response.envs().at("FI_TCP_PORT_LOW_RANGE"), "47200");
  EXPECT_EQ(pod->response.envs().at("FI_TCP_PORT_HIGH_RANGE"), "47209");
  EXPECT_EQ(RunWorkload("ports", pod->response).value("ok", false), true) << Logs();
  auto ss = Start(0, "ss", {"ss", "-ltnH"});
  ASSERT_EQ(ss->Wait(absl::Seconds(10)), 0) << ss->err();
  int fabric = 0;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(ss->out(), '\n', absl::SkipEmpty()))) {
    std::vector<std::string> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
    ASSERT_GE(cols.size(), 4u) << line;
    int port = 0;
    ASSERT_TRUE(absl::SimpleAtoi(cols[3].substr(cols[3].rfind(':') + 1), &port)) << line;
    const bool known = port == kAgentPort || port == kAgentHttp || port == kControllerPort || port == kControllerHttp;
    const bool in_range = port >= 47100 && port <= 47109;
    fabric += in_range;
    EXPECT_TRUE(known || in_range) << "host a listens on " << port << ":\n" << ss->out();
  }
  EXPECT_GE(fabric, 1) << ss->out();
}

// What the compute side must let in (install.md "Network"): new inbound TCP
// connections to the workload's fabric port range, from device servers, and
// nothing else. A session's first attach on tcp does not need them (the
// workload dials the endpoint the challenge named before the agent's first
// write), but a later attach of the session by a new process (a restarted
// container) does: the agent's first write then opens the connection.
TEST_F(EndToEndTest, WorkloadsNeedInboundConnectionsOnlyToTheirFabricPortRange) {
  FakeKubelet& kubelet = StartWithKubeletInProcess("", {"--release-grace-seconds=1", "--fabric-port-range=47200-47209"});
  if (HasFatalFailure()) return;
  auto firewall = [&](const std::vector<std::string>& rule) {
    std::vector<std::string> argv = {"/sbin/iptables"};
    argv.insert(argv.end(), rule.begin(), rule.end());
    auto fw = Start(1, "iptables", argv);
    ASSERT_EQ(fw->Wait(absl::Seconds(10)), 0) << fw->err();
  };
  // Host b accepts new TCP connections only to the workload's range.
  firewall({"-A", "INPUT", "-p", "tcp", "--syn", "-m", "multiport", "!", "--dports", "47200:47209", "-j", "DROP"});
  absl::StatusOr<AdmittedContainer> pod = kubelet.AdmitPod("e2e", "open-range", "main", kResource, 1);
  ASSERT_TRUE(pod.ok()) << pod.status() << Logs();
  EXPECT_EQ(RunWorkload("open-range", pod->response).value("ok", false), true) << Logs();
  kubelet.RemovePod("e2e", "open-range");
  // Closing the range too: the session's first attach still works (the
  // workload connected to the agent), its restarted container cannot attach,
  // because the agent must connect to it.
  firewall({"-A", "INPUT", "-p", "tcp", "--syn", "--dport", "47200:47209", "-j", "DROP"});
  absl::StatusOr<AdmittedContainer> closed = kubelet.AdmitPod("e2e", "closed-range", "main", kResource, 1);
  ASSERT_TRUE(closed.ok()) << closed.status() << Logs();
  EXPECT_EQ(RunWorkload("closed-range", closed->response).value("ok", false), true) << Logs();
  std::unique_ptr<Subprocess> refused = RunContainer("closed-range-restarted", closed->response);
  EXPECT_NE(refused->Wait(absl::ZeroDuration()), 0) << refused->out();
  EXPECT_NE(refused->err().find("fabric"), std::string::npos) << refused->err();
  firewall({"-F", "INPUT"});
}

using ::rpci::testing::ClaimRef;
using ::rpci::testing::FakeDraKubelet;

// The scheduler's part for a ResourceClaim asking one device of class
// emu.rpci.io: the allocation it writes to status (driver rpci.io, the
// slice's pool and device, the node) and the pod it reserves the claim for.
nlohmann::json AllocatedStatus(nlohmann::json claim, const std::string& device, const std::string& node) {
  claim["status"] = {
      {"allocation",
       {{"devices", {{"results", {{{"request", "remote"}, {"driver", "rpci.io"}, {"pool", "emu"}, {"device", device}}}}}},
        {"nodeSelector",
         {{"nodeSelectorTerms",
           {{{"matchFields", {{{"key", "metadata.name"}, {"operator", "In"}, {"values", {node}}}}}}}}}}}},
      {"reservedFor", {{{"resource", "pods"}, {"name", claim["metadata"]["name"].get<std::string>() + "-pod"},
                        {"uid", "5d1c6a2e-0000-4000-8000-00000000e2e0"}}}}};
  return claim;
}

// Issue 17's done-when, on the DRA path, in `version` of resource.k8s.io
// and of the kubelet's DRA API (a 1.34+ cluster: v1; 1.32-1.33: v1beta1):
// the controller publishes the emu pool (allocationMode dra) in a
// ResourceSlice; a ResourceClaim allocated one of its devices is prepared by
// rpci-plugin through the fake kubelet's DRA calls, the runtime injects the
// claim's CDI spec and the workload attaches with that environment alone and
// computes correctly; a kubelet restart and a plugin restart in the middle
// change nothing (the same CDI ids, the same session); unpreparing scrubs
// the device on the agent and a new claim on the same device is prepared and
// works.
void EndToEndTest::DraClaimLifecycle(const std::string& version) {
  const std::string api = "/apis/resource.k8s.io/" + version;
  api_args_ = {"--resource-versions=" + version};
  StartKubeController("rpci-system");
  if (HasFatalFailure()) return;
  nlohmann::json pool = Api("POST", "/apis/rpci.io/v1alpha1/devicepools",
                            {{"apiVersion", "rpci.io/v1alpha1"},
                             {"kind", "DevicePool"},
                             {"metadata", {{"name", "emu"}}},
                             {"spec", {{"resourceName", "rpci.io/emu"}, {"allocationMode", "dra"}}}});
  ASSERT_EQ(pool.value("kind", ""), "DevicePool") << pool.dump();
  StartAgent();
  FakeDraKubelet kubelet(dir_ + "/kr", dir_ + "/cdi", {version + ".DRAPlugin"});
  ASSERT_TRUE(kubelet.Start().ok());
  plugin_pools_ = "emu:dra";
  StartPlugin({"--release-grace-seconds=1", "--kubelet-dir=" + dir_ + "/kr"});
  ASSERT_TRUE(kubelet.WaitForDriver("rpci.io", 1, absl::Seconds(10))) << Logs();
  EXPECT_EQ(kubelet.ChosenService("rpci.io"), version + ".DRAPlugin");

  // The pool's devices as the scheduler sees them.
  // The devices the pool's slices offer now.
  auto offered = [&] {
    std::vector<std::string> names;
    nlohmann::json slices = Api("GET", api + "/resourceslices");
    if (slices.is_discarded() || !slices.contains("items")) return names;
    for (const nlohmann::json& slice : slices["items"]) {
      if (slice["spec"].value("driver", "") != "rpci.io" || slice["spec"]["pool"].value("name", "") != "emu") continue;
      for (const nlohmann::json& d : slice["spec"].value("devices", nlohmann::json::array())) names.push_back(d["name"]);
    }
    return names;
  };
  std::vector<std::string> devices;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30); devices.size() < 2 && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(200))) {
    devices = offered();
  }
  ASSERT_EQ(devices.size(), 2u) << Logs();
  const std::string device = devices[0];

  auto make_claim = [&](const std::string& name) -> ClaimRef {
    // v1 nests the class under `exactly`; v1beta1 names it in the request.
    nlohmann::json request = {{"name", "remote"}};
    if (version == "v1") {
      request["exactly"] = {{"deviceClassName", "emu.rpci.io"}};
    } else {
      request["deviceClassName"] = "emu.rpci.io";
    }
    nlohmann::json claim = Api("POST", api + "/namespaces/default/resourceclaims",
                               {{"apiVersion", "resource.k8s.io/" + version},
                                {"kind", "ResourceClaim"},
                                {"metadata", {{"name", name}}},
                                {"spec", {{"devices", {{"requests", {request}}}}}}});
    EXPECT_EQ(claim.value("kind", ""), "ResourceClaim") << claim.dump();
    nlohmann::json allocated = Api("PUT", api + "/namespaces/default/resourceclaims/" + name + "/status",
                                   AllocatedStatus(claim, device, "e2e-compute-node"));
    EXPECT_TRUE(allocated["status"].contains("allocation")) << allocated.dump();
    return {"default", name, claim["metadata"].value("uid", "")};
  };
  // As the kubelet's DRA manager: prepare (retried while the device is
  // still being scrubbed from its last tenant), then the runtime's CDI step.
  auto prepare = [&](const ClaimRef& claim) -> std::vector<std::string> {
    absl::StatusOr<std::vector<std::string>> ids = absl::UnavailableError("not tried");
    for (const absl::Time deadline = absl::Now() + absl::Seconds(30); absl::Now() < deadline;
         absl::SleepFor(absl::Milliseconds(200))) {
      ids = kubelet.PrepareClaim("rpci.io", claim);
      if (ids.ok()) break;
    }
    EXPECT_TRUE(ids.ok()) << ids.status() << Logs();
    return ids.ok() ? *ids : std::vector<std::string>{};
  };

  const ClaimRef first = make_claim("trainer");
  const absl::Time prepare_start = absl::Now();
  const std::vector<std::string> ids = prepare(first);
  std::printf("DRA %s: NodePrepareResources (PrepareClaim, session, CDI spec) %.1f ms\n", version.c_str(),
              absl::ToDoubleMilliseconds(absl::Now() - prepare_start));
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(ids[0], "rpci.io/claim=" + first.uid + "-" + device);
  // Held by the claim: no longer offered to the scheduler.
  bool withdrawn = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10); !withdrawn && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(200))) {
    const std::vector<std::string> now = offered();
    withdrawn = std::find(now.begin(), now.end(), device) == now.end();
  }
  EXPECT_TRUE(withdrawn) << device << " still offered while prepared";
  absl::StatusOr<v1beta1::ContainerAllocateResponse> edits = kubelet.ContainerEdits(ids);
  ASSERT_TRUE(edits.ok()) << edits.status();
  EXPECT_EQ(edits->envs().at("RPCI_SESSION_ENDPOINT"), agent_endpoint_);
  const std::string session = edits->envs().at("RPCI_SESSION_ID");

  // Kubelet restart, then plugin restart: same ids, same session.
  ASSERT_TRUE(kubelet.Restart().ok());
  ASSERT_TRUE(kubelet.WaitForDriver("rpci.io", 1, absl::Seconds(5))) << Logs();
  const absl::Time again_start = absl::Now();
  EXPECT_EQ(prepare(first), ids);
  std::printf("DRA %s: NodePrepareResources of a prepared claim %.1f ms\n", version.c_str(),
              absl::ToDoubleMilliseconds(absl::Now() - again_start));
  plugin_.reset();
  StartPlugin({"--release-grace-seconds=1", "--kubelet-dir=" + dir_ + "/kr"});
  ASSERT_TRUE(kubelet.WaitForDriver("rpci.io", 2, absl::Seconds(10))) << Logs();
  EXPECT_EQ(prepare(first), ids);
  edits = kubelet.ContainerEdits(ids);
  ASSERT_TRUE(edits.ok()) << edits.status();
  EXPECT_EQ(edits->envs().at("RPCI_SESSION_ID"), session);

  nlohmann::json summary = RunWorkload("dra-trainer", *edits);
  EXPECT_EQ(summary.value("ok", false), true) << summary.dump() << Logs();
  // The key reached the workload only through its file: no log, no CDI spec.
  ASSERT_FALSE(edits->mounts().empty());
  const std::string key(absl::StripAsciiWhitespace(ReadWholeFile(edits->mounts(0).host_path() + "/key")));
  ASSERT_EQ(key.size(), 64u) << key;
  for (const std::string& form : {key, absl::Base64Escape(absl::HexStringToBytes(key))}) {
    EXPECT_EQ(AllOutput().find(form), std::string::npos) << "session key in the logs";
    EXPECT_EQ(ReadWholeFile(dir_ + "/cdi/rpci.io-claim-" + first.uid + ".json").find(form), std::string::npos);
  }
  EXPECT_EQ(summary.value("device", ""), edits->envs().at("RPCI_DEVICE_IDS"));

  // The pod ends: unprepare, the claim is deleted, the agent scrubs.
  auto clean_scrubs = [&] {
    const std::string metrics = AgentMetrics();
    const std::string name = "rpci_agent_device_scrubs_total{result=\"clean\"} ";
    const size_t at = metrics.find(name);
    double n = 0;
    if (at != std::string::npos) {
      (void)absl::SimpleAtod(metrics.substr(at + name.size(), metrics.find('\n', at) - at - name.size()), &n);
    }
    return n;
  };
  const double before = clean_scrubs();
  const absl::Time unprepare_start = absl::Now();
  ASSERT_TRUE(kubelet.UnprepareClaim("rpci.io", first).ok()) << Logs();
  std::printf("DRA %s: NodeUnprepareResources (close, UnprepareClaim) %.1f ms\n", version.c_str(),
              absl::ToDoubleMilliseconds(absl::Now() - unprepare_start));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/cdi/rpci.io-claim-" + first.uid + ".json"));
  Api("DELETE", api + "/namespaces/default/resourceclaims/trainer");
  double after = before;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(15); after <= before && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(200))) {
    after = clean_scrubs();
  }
  EXPECT_GT(after, before) << AgentMetrics();

  // Offered again: back in the pool's slices once scrubbed (the controller
  // offers only free devices), then a new claim on it gets a fresh session.
  bool listed = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30); !listed && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(200))) {
    const std::vector<std::string> now = offered();
    listed = std::find(now.begin(), now.end(), device) != now.end();
  }
  EXPECT_TRUE(listed) << device << " not offered again" << Logs();
  const ClaimRef second = make_claim("trainer-2");
  const std::vector<std::string> again = prepare(second);
  ASSERT_EQ(again.size(), 1u);
  edits = kubelet.ContainerEdits(again);
  ASSERT_TRUE(edits.ok()) << edits.status();
  EXPECT_NE(edits->envs().at("RPCI_SESSION_ID"), session);
  summary = RunWorkload("dra-trainer-2", *edits);
  EXPECT_EQ(summary.value("ok", false), true) << summary.dump() << Logs();
  EXPECT_TRUE(kubelet.UnprepareClaim("rpci.io", second).ok());
  plugin_.reset();
  kubelet.Stop();
}

TEST_F(EndToEndTest, DraClaimIsPreparedAttachedUnpreparedScrubbedAndOfferedAgain) { DraClaimLifecycle("v1"); }

TEST_F(EndToEndTest, DraClaimLifecycleOnAV1beta1Cluster) { DraClaimLifecycle("v1beta1"); }

}  // namespace
}  // namespace rpci::testing
