// The fault-injection suite (issue 8 part 1): runs rpci's real binaries as
// separate processes, injects one fault per scenario while a workload streams
// numbered register writes to an rpci-emu device, and prints a table
// scenario -> outcome with the figures: writes acknowledged, acknowledged
// writes lost, writes applied twice, time to recover.
//
// Session path (second a row, e, f): tests/session/agent_helper (rpci-emu,
// device log on disk that survives SIGKILL, so a device that keeps its state)
// in one network namespace, the workload in another, joined by a veth pair.
// The device log is the device-side record: every value must appear once, in
// order.
// Full stack (first a row, b, c, d, g): rpci-controller --store=local, rpci-agent serve
// with emu devices, rpci-plugin, the test kubelet (tests/kubelet, in this
// process so it can be restarted) admitting a pod whose container is the
// workload. The device-side count is the agent's
// rpci_session_mmio_writes_applied_total (writes applied to devices).
//
//   faults --bin_dir=<bazel-bin> [--only=a,e] [--work_dir=/tmp]
// Exit 0 when every scenario that could run survived.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/app/agent_config.h"
#include "common/flags.h"
#include "common/testing/wait.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/harness/free_port.h"
#include "tests/harness/netns.h"
#include "tests/harness/subprocess.h"
#include "tests/harness/test_certs.h"
#include "tests/kubelet/fake_kubelet.h"

namespace rpci::testing {
namespace {

constexpr char kResource[] = "rpci.io/emu";
constexpr uint64_t kRegScratch = 0x40;

// One row of the table.
struct Outcome {
  std::string scenario;
  // survived | reported (the fault is the documented status at the workload,
  // e.g. the device reset of (a)) | failed | not available
  std::string verdict = "failed";
  std::string reason;
  int64_t acked = -1, lost = -1, twice = -1;
  double recover_s = -1;
  std::string note;
  std::string dir;  // the scenario's logs; removed after a survived run
};

std::string g_bin_dir, g_work_dir = "/tmp";

std::string Bin(const std::string& rel) { return g_bin_dir + "/" + rel; }

std::string MakeDir(const std::string& tag) {
  std::string tmpl = g_work_dir + "/rpci-f" + tag + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return "";
  return tmpl;
}


std::optional<std::string> HttpGet(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1, 0);
  client.set_read_timeout(2, 0);
  auto res = client.Get(path.c_str());
  if (!res || res->status != 200) return std::nullopt;
  return res->body;
}

// Sum of the samples of `name` (any labels) in a Prometheus text page; -1 if absent.
double MetricSum(const std::string& page, const std::string& name, const std::string& label_filter = "") {
  double sum = -1;
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (!absl::StartsWith(line, name)) continue;
    absl::string_view rest = line.substr(name.size());
    if (!rest.empty() && rest[0] != ' ' && rest[0] != '{') continue;
    if (!label_filter.empty() && line.find(label_filter) == absl::string_view::npos) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) sum = (sum < 0 ? 0 : sum) + v;
  }
  return sum;
}

int64_t ReadProgress(const std::string& path) {
  int64_t n = 0;
  std::string text = ReadWholeFile(path);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return absl::SimpleAtoi(text, &n) ? n : 0;
}

std::string Tail(const std::string& text, size_t n = 600) {
  std::string t = text.size() > n ? text.substr(text.size() - n) : text;
  for (char& c : t) {
    if (c == '\n') c = ' ';
  }
  return t;
}

// The workload's JSON result line (is_discarded when it printed none).
nlohmann::json WorkloadResult(const Subprocess& workload) {
  std::string out = workload.out();
  size_t start = out.rfind('{');
  if (start == std::string::npos) return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(out.substr(start), nullptr, false);
}

// Fills acked/lost/twice from the workload's result and the number of writes
// the device applied (`applied`, -1 unknown): applied beyond what was issued
// is "applied twice"; acknowledged writes missing on the device are "lost".
void CountFromAppliedTotal(const nlohmann::json& result, int64_t applied, Outcome* o) {
  if (result.is_discarded()) return;
  o->acked = result.value("acked", int64_t{0});
  const int64_t issued = result.value("issued", int64_t{0});
  if (applied < 0) return;
  o->lost = std::max<int64_t>(0, o->acked - applied);
  o->twice = std::max<int64_t>(0, applied - issued);
}

// What the counts say went wrong: acknowledged writes lost (or no
// device-side count), or writes applied twice; empty when nothing.
std::string CountsReason(const Outcome& o) {
  if (o.lost < 0) return "device-side count unavailable";
  if (o.lost != 0) return absl::StrCat(o.lost, " acknowledged writes lost");
  if (o.twice != 0) return absl::StrCat(o.twice, " writes applied twice");
  return "";
}

void Judge(const nlohmann::json& result, int workload_rc, Outcome* o) {
  if (!o->reason.empty()) return;
  if (result.is_discarded()) {
    o->reason = "workload printed no result";
  } else if (workload_rc != 0) {
    o->reason = "workload: " + result.value("error", std::string("exit ") + std::to_string(workload_rc));
  } else {
    o->reason = CountsReason(*o);
  }
  // A workload that failed never recovered: no recovery time.
  if (!result.is_discarded() && workload_rc == 0) {
    o->recover_s = std::max(o->recover_s, result.value("max_stall_ms", 0) / 1000.0);
  }
  if (o->reason.empty()) o->verdict = "survived";
}

// Judge, keeping the recovery time the scenario measured instead of the
// workload's longest stall.
void JudgeKeepingRecovery(const nlohmann::json& result, int workload_rc, Outcome* o) {
  const double measured = o->recover_s;
  Judge(result, workload_rc, o);
  o->recover_s = measured;
}

// Records the scenario's log dir; false (the reason set) when setup failed.
bool SetUp(const absl::Status& started, const std::string& dir, Outcome* o) {
  o->dir = dir;
  if (!started.ok()) o->reason = "setup: " + std::string(started.message());
  return started.ok();
}

// Waits until a fifth of the workload's `writes` are acknowledged (its
// progress file); false (the reason set) when not within 20 s.
bool MadeProgress(const std::string& progress_file, int64_t writes, Subprocess& workload, Outcome* o) {
  if (WaitFor([&] { return ReadProgress(progress_file) >= writes / 5; }, absl::Seconds(20))) return true;
  o->reason = "workload made no progress: " + Tail(workload.out() + workload.err());
  return false;
}

// ---------------------------------------------------------------- session path

// agent_helper (rpci-emu) in host a, the workload in host b.
class SessionPath {
 public:
  explicit SessionPath(int64_t agent_grace_ms) : agent_grace_ms_(agent_grace_ms) {}

  absl::Status Start(const std::string& tag) {
    dir_ = MakeDir(tag);
    if (dir_.empty()) return absl::InternalError("mkdtemp failed");
    absl::StatusOr<VethPair> pair = VethPair::Create("flt" + tag);
    if (!pair.ok()) return pair.status();
    pair_.emplace(std::move(*pair));
    if (absl::Status s = StartAgent(0); !s.ok()) return s;
    port_ = endpoint_.substr(endpoint_.rfind(':') + 1);
    Subprocess reserve(pair_->ExecIn(1, {Bin("tests/session/client_helper"), "--endpoint=" + endpoint_,
                                         "--env_dir=" + dir_}),
                       dir_ + "/reserve.out", dir_ + "/reserve.err");
    if (reserve.Wait(absl::Seconds(30)) != 0) return absl::InternalError("reserve: " + Tail(reserve.err()));
    for (absl::string_view line : absl::StrSplit(ReadWholeFile(dir_ + "/env"), '\n', absl::SkipEmpty())) {
      size_t eq = line.find('=');
      if (eq != absl::string_view::npos) env_[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    }
    return absl::OkStatus();
  }

  absl::Status StartAgent(int attempt) {
    const std::string ready = dir_ + "/ready";
    unlink(ready.c_str());
    std::vector<std::string> argv = {Bin("tests/session/agent_helper"), "--device=emu",
                                     "--address=" + pair_->addr_a(), "--ready_file=" + ready,
                                     "--state_dir=" + dir_, "--device_log=" + dir_ + "/device.log",
                                     absl::StrCat("--grace_ms=", agent_grace_ms_)};
    if (!port_.empty()) argv.push_back("--port=" + port_);
    agent_ = std::make_unique<Subprocess>(pair_->ExecIn(0, argv), absl::StrCat(dir_, "/agent", attempt, ".out"),
                                          absl::StrCat(dir_, "/agent", attempt, ".err"));
    if (!WaitFor([&] { return !ReadWholeFile(ready).empty(); }, absl::Seconds(10))) {
      return absl::InternalError("agent_helper did not start: " + Tail(agent_->err()));
    }
    endpoint_ = ReadWholeFile(ready);
    while (!endpoint_.empty() && endpoint_.back() == '\n') endpoint_.pop_back();
    return absl::OkStatus();
  }

  std::unique_ptr<Subprocess> StartWorkload(int64_t writes, int64_t duration_ms) {
    return std::make_unique<Subprocess>(
        pair_->ExecIn(1, {Bin("tests/faults/stream_workload"), absl::StrCat("--writes=", writes),
                          absl::StrCat("--duration_ms=", duration_ms), "--progress_file=" + progress()}),
        dir_ + "/workload.out", dir_ + "/workload.err", env_);
  }

  // Counts the device log against the workload: values are 0..issued-1 in
  // order; a value seen again is applied twice, an acknowledged value never
  // seen is lost.
  void CountFromDeviceLog(const nlohmann::json& result, Outcome* o) {
    if (result.is_discarded()) return;
    o->acked = result.value("acked", int64_t{0});
    const std::string log = ReadWholeFile(dir_ + "/device.log");
    std::vector<int64_t> seen(static_cast<size_t>(result.value("issued", int64_t{0})) + 1, 0);
    int64_t out_of_order = 0, foreign = 0, last = -1;
    for (size_t i = 0; i + 16 <= log.size(); i += 16) {
      uint64_t rec[2];
      std::memcpy(rec, log.data() + i, 16);
      if (rec[0] != kRegScratch || rec[1] >= seen.size()) {
        ++foreign;
        continue;
      }
      if (static_cast<int64_t>(rec[1]) != last + 1 && seen[rec[1]] == 0) ++out_of_order;
      last = static_cast<int64_t>(rec[1]);
      ++seen[rec[1]];
    }
    o->lost = 0;
    o->twice = 0;
    for (int64_t v = 0; v < static_cast<int64_t>(seen.size()); ++v) {
      if (v < o->acked && seen[v] == 0) ++o->lost;
      if (seen[v] > 1) o->twice += seen[v] - 1;
    }
    if (out_of_order > 0 || foreign > 0) {
      o->reason = absl::StrCat("device log: ", out_of_order, " writes out of order, ", foreign, " unexpected");
    }
  }

  void StopAgent() {
    if (agent_ == nullptr) return;
    agent_->Signal(SIGTERM);
    agent_->Wait(absl::Seconds(10));
  }

  std::string progress() const { return dir_ + "/progress"; }
  VethPair& pair() { return *pair_; }
  Subprocess& agent() { return *agent_; }
  const std::string& dir() const { return dir_; }
  ~SessionPath() {
    agent_.reset();
    pair_.reset();
  }

 private:
  const int64_t agent_grace_ms_;
  std::string dir_, endpoint_, port_;
  std::optional<VethPair> pair_;
  std::unique_ptr<Subprocess> agent_;
  std::map<std::string, std::string> env_;
};

// The agent's session grace: longer than the longest partition, so the
// client's own grace (10 s, librpci) decides.
constexpr int64_t kLongAgentGraceMs = 30000;

Outcome RunSessionScenario(const std::string& tag, const std::string& name, int64_t writes, int64_t duration_ms,
                           const std::function<absl::Status(SessionPath&, Outcome*)>& fault,
                           int64_t agent_grace_ms = kLongAgentGraceMs) {
  Outcome o;
  o.scenario = name;
  SessionPath path(agent_grace_ms);
  absl::Status started = path.Start(tag);
  if (!SetUp(started, path.dir(), &o)) return o;
  auto workload = path.StartWorkload(writes, duration_ms);
  if (!MadeProgress(path.progress(), writes, *workload, &o)) return o;
  if (absl::Status s = fault(path, &o); !s.ok()) {
    o.reason = "fault injection: " + std::string(s.message());
    return o;
  }
  const int rc = workload->Wait(absl::Seconds(60));
  if (rc < 0) o.reason = "workload did not finish within 60 s";
  nlohmann::json result = WorkloadResult(*workload);
  path.StopAgent();
  path.CountFromDeviceLog(result, &o);
  if (!result.is_discarded()) {
    o.note = absl::StrCat("reconnects ", result.value("reconnects", 0), ", replayed ", result.value("replayed", 0));
  }
  Judge(result, rc, &o);
  return o;
}

// (a, second row) SIGKILL of the session-serving process mid-stream, with a
// device that keeps its state across the restart: agent_helper (not
// rpci-agent), whose device declares keeps_state_across_agent_restart and
// records every applied write in a log on disk. Restarted on the same port
// and state dir, the session comes back from the checkpoint and the client
// resumes. This shows the checkpoint/replay protocol at the network level;
// the real agent with rpci-emu is the first (a) row.
Outcome SessionServerSigkillDeviceKeepsState() {
  return RunSessionScenario("a", "(a) session-server SIGKILL, device keeps state", 3000, 5000,
                            [](SessionPath& p, Outcome*) {
                              p.agent().Signal(SIGKILL);
                              p.agent().Wait(absl::Seconds(5));
                              absl::SleepFor(absl::Milliseconds(500));
                              return p.StartAgent(1);
                            });
}

// (e) 10 s partition between the compute and device namespaces.
absl::Status CutTenSeconds(SessionPath& p, Outcome*) {
  if (absl::Status s = p.pair().SetLinkUp(false); !s.ok()) return s;
  absl::SleepFor(absl::Seconds(10));
  return p.pair().SetLinkUp(true);
}

Outcome Partition() {
  return RunSessionScenario("e", "(e) 10 s partition compute <-> device", 3000, 5000, CutTenSeconds);
}

// (e) again with the agent's session grace at its shipped default
// (session.grace_seconds): does a 10 s partition survive out of the box?
Outcome PartitionDefaultGrace() {
  const absl::Duration grace = rpci::agent::AgentOptions().session_grace;
  return RunSessionScenario("E",
                            absl::StrCat("(e) same, agent session grace at default ", absl::ToInt64Seconds(grace), " s"),
                            3000, 5000, CutTenSeconds, absl::ToInt64Milliseconds(grace));
}

// (f) 5 % packet loss on the session path for the whole stream.
Outcome PacketLoss() {
  return RunSessionScenario("f", "(f) 5 % packet loss on the session path", 3000, 5000, [](SessionPath& p, Outcome*) {
    return p.pair().SetImpairment(5, 0);
  });
}

// (f) 50 ms delay: needs tc netem; reported as not available when the kernel
// has none (never faked).
Outcome Delay() {
  Outcome o;
  o.scenario = "(f) 50 ms delay on the session path";
  absl::Status available = absl::OkStatus();
  {
    absl::StatusOr<VethPair> probe = VethPair::Create("fltd");
    if (!probe.ok()) {
      o.reason = "setup: " + std::string(probe.status().message());
      return o;
    }
    available = probe->SetImpairment(0, 50);
  }
  if (available.code() == absl::StatusCode::kUnimplemented) {
    o.verdict = "not available";
    o.reason = "not available on this kernel (no sch_netem)";
    return o;
  }
  return RunSessionScenario("d", o.scenario, 1000, 5000, [](SessionPath& p, Outcome*) {
    return p.pair().SetImpairment(0, 50);
  });
}

// ------------------------------------------------------------------ full stack

// controller + agent (2 rpci-emu devices) + per compute node a test kubelet
// and a plugin, all on loopback.
class Stack {
 public:
  struct Node {
    std::string name, dir;
    std::unique_ptr<FakeKubelet> kubelet;
    std::unique_ptr<Subprocess> plugin;
    int plugin_http = 0, starts = 0;
  };

  explicit Stack(std::string tag) : tag_(std::move(tag)) {}
  ~Stack() {
    for (auto& w : workloads_) w.reset();
    for (Node& n : nodes_) {
      n.plugin.reset();
      if (n.kubelet) n.kubelet->Stop();
    }
    agent_.reset();
    controller_.reset();
  }

  absl::Status Start(int compute_nodes) {
    dir_ = MakeDir(tag_);
    if (dir_.empty()) return absl::InternalError("mkdtemp failed");
    controller_port_ = FreeLoopbackPort();
    controller_http_ = FreeLoopbackPort();
    agent_port_ = FreeLoopbackPort();
    agent_http_ = FreeLoopbackPort();
    if (absl::Status s = MakeCertificates(compute_nodes); !s.ok()) return s;
    if (absl::Status s = StartController(); !s.ok()) return s;
    if (absl::Status s = StartAgent(); !s.ok()) return s;
    for (int i = 0; i < compute_nodes; ++i) {
      Node n;
      n.name = absl::StrCat("compute-", i);
      n.dir = absl::StrCat(dir_, "/n", i);
      std::filesystem::create_directories(n.dir + "/kubelet");
      std::filesystem::create_directories(n.dir + "/state");
      std::filesystem::create_directories(n.dir + "/cdi");
      n.kubelet = std::make_unique<FakeKubelet>(n.dir + "/kubelet", n.dir + "/kubelet/pod-resources.sock");
      if (absl::Status s = n.kubelet->Start(); !s.ok()) return s;
      n.plugin_http = FreeLoopbackPort();
      nodes_.push_back(std::move(n));
      if (absl::Status s = StartPlugin(nodes_.size() - 1); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // mTLS as tools/certs makes it for local mode, all for 127.0.0.1.
  absl::Status MakeCertificates(int compute_nodes) {
    std::vector<std::string> names = {"controller", "agent:device-0"};
    for (int i = 0; i < compute_nodes; ++i) names.push_back(absl::StrCat("plugin:compute-", i));
    absl::StatusOr<TestCerts> certs = MakeTestCerts(dir_ + "/certs", names, {"127.0.0.1"});
    if (!certs.ok()) return certs.status();
    certs_ = *certs;
    return absl::OkStatus();
  }

  absl::Status StartController() {
    ++controller_starts_;
    std::vector<std::string> argv = {Bin("controller/rpci-controller"), "--store=local",
                                     "--state-dir=" + dir_ + "/controller",
                                     absl::StrCat("--listen=127.0.0.1:", controller_port_),
                                     absl::StrCat("--http-listen=127.0.0.1:", controller_http_),
                                     "--reconcile-interval-ms=200", "--agent-lease-seconds=12",
                                     "--node-lease-seconds=30"};
    for (const std::string& f : certs_.Flags("controller")) argv.push_back(f);
    controller_ = std::make_unique<Subprocess>(argv,
        absl::StrCat(dir_, "/controller", controller_starts_, ".out"),
        absl::StrCat(dir_, "/controller", controller_starts_, ".log"));
    if (!WaitFor([&] { return HttpGet(controller_http_, "/readyz").has_value(); }, absl::Seconds(30))) {
      return absl::InternalError(absl::StrCat("controller not ready within 30 s (exit ",
                                              controller_->Wait(absl::ZeroDuration()), "): ", Tail(controller_->err())));
    }
    return absl::OkStatus();
  }

  absl::Status StartAgent() {
    std::ofstream(dir_ + "/agent.yaml")
        << "node: device-0\n"
        << "controller: {address: \"127.0.0.1:" << controller_port_ << "\"}\n"
        << certs_.AgentConfig("agent:device-0")
        << "session: {listen: \"127.0.0.1:" << agent_port_ << "\", state_dir: " << dir_ << "/agent}\n"
        << "fabric: {provider: \"tcp;ofi_rxm\", address: 127.0.0.1}\n"
        << "emu:\n  - {pool: emu, count: 2, dma_size: 1048576}\n"
        << "http: {listen: \"127.0.0.1:" << agent_http_ << "\"}\n";
    std::filesystem::create_directories(dir_ + "/agent");
    ++agent_starts_;
    agent_ = std::make_unique<Subprocess>(
        std::vector<std::string>{Bin("agent/rpci-agent"), "serve", "--config=" + dir_ + "/agent.yaml"},
        absl::StrCat(dir_, "/agent", agent_starts_, ".out"), absl::StrCat(dir_, "/agent", agent_starts_, ".log"));
    if (!WaitFor([&] { return HttpGet(agent_http_, "/readyz").has_value(); }, absl::Seconds(30))) {
      return absl::InternalError(absl::StrCat("agent not ready within 30 s (exit ", agent_->Wait(absl::ZeroDuration()),
                                              "): ", Tail(agent_->err())));
    }
    return absl::OkStatus();
  }

  absl::Status StartPlugin(size_t i) {
    Node& n = nodes_[i];
    ++n.starts;
    std::vector<std::string> argv = {Bin("plugin/rpci-plugin"), "--node=" + n.name,
                                     absl::StrCat("--controller=127.0.0.1:", controller_port_), "--pools=emu",
                                     "--plugin-dir=" + n.dir + "/kubelet",
                                     "--pod-resources-socket=" + n.dir + "/kubelet/pod-resources.sock",
                                     "--cdi-dir=" + n.dir + "/cdi", "--state-dir=" + n.dir + "/state",
                                     "--container-dir=" + n.dir + "/state",
                                     absl::StrCat("--health-addr=127.0.0.1:", n.plugin_http),
                                     "--usage-interval-seconds=1"};
    for (const std::string& f : certs_.Flags("plugin:" + n.name)) argv.push_back(f);
    n.plugin = std::make_unique<Subprocess>(argv,
        absl::StrCat(n.dir, "/plugin", n.starts, ".out"), absl::StrCat(n.dir, "/plugin", n.starts, ".log"));
    if (!WaitFor([&] { return HttpGet(n.plugin_http, "/healthz").has_value(); }, absl::Seconds(30))) {
      return absl::InternalError(absl::StrCat("plugin not healthy within 30 s (exit ", n.plugin->Wait(absl::ZeroDuration()),
                                              "): ", Tail(n.plugin->err())));
    }
    return absl::OkStatus();
  }

  // The pod's admission as the kubelet does it, retried (as the kubelet
  // retries a pod whose admission failed) until `timeout`.
  absl::StatusOr<AdmittedContainer> AdmitPod(size_t i, const std::string& pod, absl::Duration timeout) {
    Node& n = nodes_[i];
    const absl::Time deadline = absl::Now() + timeout;
    absl::Status last = absl::DeadlineExceededError("no healthy device advertised");
    while (absl::Now() < deadline) {
      bool healthy = n.kubelet->WaitForDevices(
          kResource,
          [](const std::vector<AdvertisedDevice>& devices) {
            for (const auto& d : devices) {
              if (d.health == "Healthy") return true;
            }
            return false;
          },
          deadline - absl::Now());
      if (!healthy) break;
      absl::StatusOr<AdmittedContainer> admitted = n.kubelet->AdmitPod("faults", pod, "main", kResource, 1);
      if (admitted.ok()) return admitted;
      last = admitted.status();
      absl::SleepFor(absl::Milliseconds(200));
    }
    return absl::Status(last.code(), absl::StrCat(nodes_[i].name, "/", pod, ": ", last.message()));
  }

  // Runs the workload as the pod's container with the environment Allocate returned.
  Subprocess& RunContainer(const AdmittedContainer& c, const std::string& pod, int64_t writes, int64_t duration_ms) {
    std::map<std::string, std::string> env(c.response.envs().begin(), c.response.envs().end());
    workloads_.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{Bin("tests/faults/stream_workload"), absl::StrCat("--writes=", writes),
                                 absl::StrCat("--duration_ms=", duration_ms), "--progress_file=" + Progress(pod)},
        dir_ + "/" + pod + ".out", dir_ + "/" + pod + ".err", env));
    return *workloads_.back();
  }

  std::string Progress(const std::string& pod) const { return dir_ + "/" + pod + ".progress"; }
  int64_t AgentApplied() const {
    std::optional<std::string> page = HttpGet(agent_http_, "/metrics");
    if (!page) return -1;
    return static_cast<int64_t>(MetricSum(*page, "rpci_session_mmio_writes_applied_total"));
  }
  // The agent's rpci_session_refused_total{reason=`reason`}; -1 if unreadable.
  int64_t AgentRefused(const std::string& reason) const {
    std::optional<std::string> page = HttpGet(agent_http_, "/metrics");
    if (!page) return -1;
    return static_cast<int64_t>(
        std::max(0.0, MetricSum(*page, "rpci_session_refused_total", absl::StrCat("reason=\"", reason, "\""))));
  }
  std::optional<std::string> ControllerMetrics() const { return HttpGet(controller_http_, "/metrics"); }

  Node& node(size_t i) { return nodes_[i]; }
  Subprocess& controller() { return *controller_; }
  Subprocess& agent() { return *agent_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string tag_, dir_;
  TestCerts certs_;
  int controller_port_ = 0, controller_http_ = 0, agent_port_ = 0, agent_http_ = 0, controller_starts_ = 0,
      agent_starts_ = 0;
  std::unique_ptr<Subprocess> controller_, agent_;
  std::vector<Node> nodes_;
  std::vector<std::unique_ptr<Subprocess>> workloads_;
};

struct PodRun {
  Stack stack;
  Subprocess* workload = nullptr;
  std::string device;
  explicit PodRun(const std::string& tag) : stack(tag) {}
};

// Starts a one-node stack and a pod streaming `writes`; waits until a fifth
// of them are acknowledged. Sets o->reason on failure.
bool StartPodRun(PodRun& run, int64_t writes, int64_t duration_ms, Outcome* o) {
  absl::Status started = run.stack.Start(1);
  if (!SetUp(started, run.stack.dir(), o)) return false;
  absl::StatusOr<AdmittedContainer> admitted = run.stack.AdmitPod(0, "pod-0", absl::Seconds(20));
  if (!admitted.ok()) {
    o->reason = "admission: " + std::string(admitted.status().message());
    return false;
  }
  run.device = admitted->device_ids.empty() ? "" : admitted->device_ids[0];
  run.workload = &run.stack.RunContainer(*admitted, "pod-0", writes, duration_ms);
  return MadeProgress(run.stack.Progress("pod-0"), writes, *run.workload, o);
}

// Waits for the workload and judges its run; with `keep_recovery` the
// recovery time is the one the scenario measured.
void FinishPodRun(PodRun& run, Outcome* o, bool keep_recovery = false) {
  const int rc = run.workload->Wait(absl::Seconds(60));
  if (rc < 0 && o->reason.empty()) o->reason = "workload did not finish within 60 s";
  nlohmann::json result = WorkloadResult(*run.workload);
  CountFromAppliedTotal(result, run.stack.AgentApplied(), o);
  if (keep_recovery) {
    JudgeKeepingRecovery(result, rc, o);
  } else {
    Judge(result, rc, o);
  }
}

// A full-stack scenario: a pod streaming `writes` over `duration_ms`; once a
// fifth are acknowledged, `body` injects the fault and judges the outcome.
Outcome PodScenario(const std::string& tag, const std::string& name, int64_t writes, int64_t duration_ms,
                    const std::function<void(PodRun&, Outcome*)>& body) {
  Outcome o;
  o.scenario = name;
  PodRun run(tag);
  if (StartPodRun(run, writes, duration_ms, &o)) body(run, &o);
  return o;
}

// A PodScenario whose `fault` sets o->reason, o->recover_s and o->note; then
// the workload is judged as FinishPodRun does.
Outcome RunPodScenario(const std::string& tag, const std::string& name, int64_t writes, int64_t duration_ms,
                       const std::function<void(PodRun&, Outcome*)>& fault, bool keep_recovery = false) {
  return PodScenario(tag, name, writes, duration_ms, [&](PodRun& run, Outcome* o) {
    fault(run, o);
    FinishPodRun(run, o, keep_recovery);
  });
}

bool DeviceHealthIs(FakeKubelet& kubelet, const std::string& device, const std::string& health) {
  for (const AdvertisedDevice& d : kubelet.Devices(kResource)) {
    if (d.id == device) return d.health == health;
  }
  return false;
}

// "id=health ..." of what the kubelet last got, for failure reasons.
std::string Advertised(FakeKubelet& kubelet) {
  std::string out;
  for (const AdvertisedDevice& d : kubelet.Devices(kResource)) absl::StrAppend(&out, out.empty() ? "" : " ", d.id, "=", d.health);
  return out.empty() ? "nothing" : out;
}

// (b) SIGKILL of the plugin: the running pod's session keeps working; the
// restarted plugin registers again and advertises the device healthy.
Outcome PluginSigkill() {
  return RunPodScenario("b", "(b) plugin SIGKILL, restart", 3000, 5000, [](PodRun& run, Outcome* o) {
    Stack::Node& n = run.stack.node(0);
    n.plugin->Signal(SIGKILL);
    n.plugin->Wait(absl::Seconds(5));
    const absl::Time killed = absl::Now();
    if (absl::Status s = run.stack.StartPlugin(0); !s.ok()) {
      o->reason = "plugin restart: " + std::string(s.message());
    } else if (!n.kubelet->WaitForRegistration(kResource, 2, absl::Seconds(10))) {
      o->reason = "restarted plugin did not register with the kubelet";
    } else if (!WaitFor(
                   [&] {
                     // Counted per registration: the restarted plugin's own list.
                     return n.kubelet->ListAndWatchUpdates(kResource) > 0 &&
                            DeviceHealthIs(*n.kubelet, run.device, "Healthy");
                   },
                   absl::Seconds(10))) {
      o->reason = absl::StrCat("pod's device ", run.device,
                               " not advertised Healthy within 10 s of the plugin restart (",
                               n.kubelet->ListAndWatchUpdates(kResource), " new device lists, last: ",
                               Advertised(*n.kubelet), ")");
    }
    o->recover_s = absl::ToDoubleSeconds(absl::Now() - killed);
    o->note = "recover = kill to re-registered + device Healthy";
  });
}

// (d) kubelet restart: sockets wiped, kubelet.sock recreated; the plugin
// must register again within 1 s and the pod's session is untouched.
Outcome KubeletRestart() {
  return RunPodScenario(
      "d", "(d) kubelet restart", 3000, 5000,
      [](PodRun& run, Outcome* o) {
        Stack::Node& n = run.stack.node(0);
        const absl::Time restarted = absl::Now();
        if (absl::Status s = n.kubelet->Restart(); !s.ok()) {
          o->reason = "kubelet restart: " + std::string(s.message());
        } else if (!n.kubelet->WaitForRegistration(kResource, 1, absl::Seconds(5))) {
          o->reason = "plugin did not register again within 5 s";
        } else {
          const std::vector<Registration> regs = n.kubelet->registrations();
          o->recover_s = absl::ToDoubleSeconds(regs.front().at - restarted);
          if (o->recover_s > 1.0) o->reason = absl::StrFormat("re-registration took %.2f s (> 1 s)", o->recover_s);
        }
        o->note = "recover = re-registration time";
      },
      /*keep_recovery=*/true);
}

// (c) controller SIGKILLed while two compute nodes allocate one device each
// of two; restarted on the same state dir. No device may go to both pods.
Outcome ControllerRestart() {
  Outcome o;
  o.scenario = "(c) controller restart during allocation";
  Stack stack("c");
  absl::Status started = stack.Start(2);
  if (!SetUp(started, stack.dir(), &o)) return o;
  absl::StatusOr<AdmittedContainer> admitted[2] = {absl::UnknownError("not run"), absl::UnknownError("not run")};
  std::thread pods[2];
  for (int i = 0; i < 2; ++i) {
    pods[i] = std::thread([&, i] { admitted[i] = stack.AdmitPod(i, absl::StrCat("pod-", i), absl::Seconds(30)); });
  }
  // Kill the controller as soon as it hands out devices (the spares' assign
  // decisions), restart it, and kill it again at its first claim (attach
  // decision) if it comes within 10 s: allocation interrupted twice.
  absl::Time killed = absl::InfinitePast();
  absl::Status restarted = absl::OkStatus();
  int kills = 0;
  for (const char* action : {"\"action\":\"assign\"", "\"action\":\"attach\""}) {
    const std::string log = absl::StrCat(stack.dir(), "/controller", kills + 1, ".log");
    if (!WaitFor([&] { return ReadWholeFile(log).find(action) != std::string::npos; }, absl::Seconds(10),
                   absl::Milliseconds(5))) {
      continue;
    }
    stack.controller().Signal(SIGKILL);
    stack.controller().Wait(absl::Seconds(5));
    ++kills;
    killed = absl::Now();
    restarted = stack.StartController();
    if (!restarted.ok()) break;
  }
  for (auto& t : pods) t.join();
  o.recover_s = absl::ToDoubleSeconds(absl::Now() - killed);
  o.note = absl::StrCat("controller SIGKILLed ", kills, "x; recover = last kill to both pods admitted");
  if (!restarted.ok()) {
    o.reason = "controller restart: " + std::string(restarted.message());
    return o;
  }
  if (kills == 0) {
    o.reason = "the controller made no assignment to interrupt";
    return o;
  }
  for (int i = 0; i < 2; ++i) {
    if (!admitted[i].ok()) {
      o.reason = "admission: " + std::string(admitted[i].status().message());
      return o;
    }
  }
  if (admitted[0]->device_ids == admitted[1]->device_ids) {
    o.reason = "double assignment: both pods got " + admitted[0]->device_ids[0];
    return o;
  }
  Subprocess* w[2];
  for (int i = 0; i < 2; ++i) w[i] = &stack.RunContainer(*admitted[i], absl::StrCat("pod-", i), 1500, 2000);
  nlohmann::json merged = {{"acked", 0}, {"issued", 0}, {"max_stall_ms", 0}};
  int rc = 0;
  for (int i = 0; i < 2; ++i) {
    const int r = w[i]->Wait(absl::Seconds(60));
    nlohmann::json result = WorkloadResult(*w[i]);
    if (result.is_discarded()) {
      merged = result;
      rc = r;
      break;
    }
    if (r != 0) {
      rc = r;
      merged["error"] = absl::StrCat("pod-", i, ": ", result.value("error", std::string("failed")));
    }
    merged["acked"] = merged["acked"].get<int64_t>() + result.value("acked", int64_t{0});
    merged["issued"] = merged["issued"].get<int64_t>() + result.value("issued", int64_t{0});
  }
  CountFromAppliedTotal(merged, stack.AgentApplied(), &o);
  JudgeKeepingRecovery(merged, rc, &o);
  return o;
}

// (g) the device server stops answering for good (SIGSTOP: no heartbeat, no
// session traffic, no FIN): the controller reclaims its devices and the
// kubelet sees the pod's device Unhealthy.
Outcome DeviceServerGone() {
  return PodScenario("g", "(g) device server never returns", 20000, 30000, [](PodRun& run, Outcome* o) {
    Stack::Node& n = run.stack.node(0);
    run.stack.agent().Signal(SIGSTOP);
    const absl::Time gone = absl::Now();
    bool unhealthy = WaitFor([&] { return DeviceHealthIs(*n.kubelet, run.device, "Unhealthy"); },
                               absl::Seconds(30), absl::Milliseconds(50));
    const double unhealthy_s = absl::ToDoubleSeconds(absl::Now() - gone);
    // Reclaimed: the controller counts both of the lost server's devices
    // Unhealthy (the spare's assignment is taken back; the attached one stays
    // with its pod until the pod goes, but is no longer offered) and none
    // Available, Assigned or Attached.
    bool reclaimed = WaitFor(
        [&] {
          std::optional<std::string> page = run.stack.ControllerMetrics();
          if (!page) return false;
          double held = 0;
          for (const char* phase : {"Available", "Assigned", "Attached"}) {
            held += std::max(0.0, MetricSum(*page, "rpci_controller_devices", absl::StrCat("phase=\"", phase, "\"")));
          }
          return held == 0 && MetricSum(*page, "rpci_controller_devices", "phase=\"Unhealthy\"") == 2;
        },
        absl::Seconds(30), absl::Milliseconds(100));
    const double reclaimed_s = absl::ToDoubleSeconds(absl::Now() - gone);
    // The workload gives up once its grace is over; count what it had acknowledged.
    const int rc = run.workload->Wait(absl::Seconds(40));
    nlohmann::json result = WorkloadResult(*run.workload);
    // Thaw the agent only to read how many writes its devices applied.
    run.stack.agent().Signal(SIGCONT);
    CountFromAppliedTotal(result, run.stack.AgentApplied(), o);
    run.stack.agent().Signal(SIGKILL);
    o->recover_s = std::max(unhealthy_s, reclaimed_s);
    o->note = absl::StrFormat("Unhealthy at kubelet after %.1f s, reclaimed after %.1f s; workload %s", unhealthy_s,
                             reclaimed_s, rc == 0 ? "finished?!" : "failed as expected");
    if (!unhealthy) {
      o->reason = "pod's device not Unhealthy at the kubelet after 30 s";
    } else if (!reclaimed) {
      o->reason = "controller still offers or holds the lost server's devices after 30 s";
    } else if (rc == 0) {
      o->reason = "workload reported success against a stopped device server";
    } else {
      o->reason = CountsReason(*o);
    }
    if (o->reason.empty()) o->verdict = "survived";
  });
}

// (a) SIGKILL of the real rpci-agent (serving rpci-emu devices) while a pod
// streams writes; restarted on the same config and state dir. rpci-emu starts
// fresh, so per docs/sessions.md (Resilience, agent restart) the session that
// built device state must be refused on resume with DATA_LOSS "the agent
// restarted and the device was reset" (reason device_reset), and the
// workload must fail with that status instead of resuming against the reset
// device. The row reports whether the reset was reported to the workload,
// what the workload had acknowledged before the kill (device state that the
// reset took, reported, not silent), and the time from the kill to the status.
Outcome AgentSigkillDeviceReset() {
  return PodScenario("a", "(a) rpci-agent SIGKILL, restart (rpci-emu)", 3000, 5000, [](PodRun& run, Outcome* o) {
    run.stack.agent().Signal(SIGKILL);
    run.stack.agent().Wait(absl::Seconds(5));
    const absl::Time killed = absl::Now();
    const int64_t acked_at_kill = ReadProgress(run.stack.Progress("pod-0"));
    absl::Status restarted = run.stack.StartAgent();
    const double restart_s = absl::ToDoubleSeconds(absl::Now() - killed);
    const int64_t acked_at_restart = ReadProgress(run.stack.Progress("pod-0"));
    const int rc = run.workload->Wait(absl::Seconds(60));
    const double status_s = absl::ToDoubleSeconds(absl::Now() - killed);
    nlohmann::json result = WorkloadResult(*run.workload);
    const int64_t applied_after = run.stack.AgentApplied();
    const int64_t refused = run.stack.AgentRefused("device_reset");
    const std::string error = result.is_discarded() ? "" : result.value("error", std::string());
    const bool reported = rc > 0 && absl::StrContains(error, "FAILED_PRECONDITION") &&
                          absl::StrContains(error, "the agent restarted and the device was reset");
    if (!result.is_discarded()) o->acked = result.value("acked", int64_t{0});
    if (reported) o->recover_s = status_s;
    o->note = absl::StrFormat(
        "device reset reported: %s; acked before kill %d of %d issued (progress file at kill %d), acked after "
        "restart %d; "
        "kill to status %.2f s (agent ready after %.2f s); restarted agent: device_reset refusals %d, writes "
        "applied %d; recover = kill to the workload's status",
        reported ? "yes" : "no", o->acked, result.is_discarded() ? int64_t{-1} : result.value("issued", int64_t{0}),
        acked_at_kill, std::max<int64_t>(0, o->acked - acked_at_restart), status_s,
        restart_s, refused, applied_after);
    if (!restarted.ok()) {
      o->reason = "agent restart: " + std::string(restarted.message());
    } else if (rc < 0) {
      o->reason = "workload did not finish within 60 s of the kill";
    } else if (result.is_discarded()) {
      o->reason = "workload printed no result";
    } else if (rc == 0) {
      o->reason = "workload finished OK against a reset device (silent resume)";
    } else if (!reported) {
      o->reason = "workload failed without the device-reset status: " + error;
    } else if (o->acked > acked_at_restart) {
      o->reason = "writes acknowledged after the restart (resumed against a reset device)";
    } else if (applied_after != 0) {
      o->reason = absl::StrCat("the restarted agent applied ", applied_after, " writes (silent resume)");
    } else if (refused < 1) {
      o->reason = "the restarted agent counted no device_reset refusal";
    } else {
      o->verdict = "reported";
    }
  });
}

std::string Fig(int64_t v) { return v < 0 ? "-" : std::to_string(v); }

void PrintTable(const std::vector<Outcome>& rows) {
  std::printf("\n%-46s %-13s %7s %5s %6s %9s  %s\n", "scenario", "outcome", "acked", "lost", "twice", "recover",
              "reason / notes");
  std::printf("%s\n", std::string(130, '-').c_str());
  for (const Outcome& r : rows) {
    std::string recover = r.recover_s < 0 ? "-" : absl::StrFormat("%.2f s", r.recover_s);
    std::string why = r.reason;
    if (!r.note.empty()) why += (why.empty() ? "" : "; ") + r.note;
    std::printf("%-46s %-13s %7s %5s %6s %9s  %s\n", r.scenario.c_str(), r.verdict.c_str(), Fig(r.acked).c_str(),
                Fig(r.lost).c_str(), Fig(r.twice).c_str(), recover.c_str(), why.c_str());
  }
}

}  // namespace
}  // namespace rpci::testing

int main(int argc, char** argv) {
  using namespace rpci::testing;
  std::string only;
  rpci::FlagSet flags("faults --bin_dir=DIR [--only=a,b,...]",
                      "rpci fault-injection suite: real binaries as processes, one fault per scenario, a table of "
                      "outcomes. Needs root (network namespaces).");
  flags.String("bin_dir", &g_bin_dir, "bazel-bin holding the built binaries");
  flags.String("work_dir", &g_work_dir, "where scenario directories are made (short: unix sockets)");
  flags.String("only", &only, "comma-separated scenario letters (a b c d e f g); empty: all");
  flags.Require([] { return !g_bin_dir.empty(); }, "--bin_dir is required");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  signal(SIGPIPE, SIG_IGN);
  std::string why;
  const bool netns = CanUseNetworkNamespaces(&why);
  // letter, runs in network namespaces (session path), scenario.
  struct Scenario {
    std::string letter;
    bool netns;
    std::function<Outcome()> run;
  };
  const std::vector<Scenario> all = {
      {"a", false, AgentSigkillDeviceReset}, {"a", true, SessionServerSigkillDeviceKeepsState},
      {"b", false, PluginSigkill},           {"c", false, ControllerRestart},
      {"d", false, KubeletRestart},          {"e", true, Partition},
      {"e", true, PartitionDefaultGrace},    {"f", true, PacketLoss},
      {"f", true, Delay},                    {"g", false, DeviceServerGone}};
  std::set<std::string> wanted;
  for (absl::string_view s : absl::StrSplit(only, ',', absl::SkipEmpty())) wanted.insert(std::string(s));
  std::vector<Outcome> rows;
  for (const Scenario& sc : all) {
    if (!wanted.empty() && wanted.count(sc.letter) == 0) continue;
    const absl::Time start = absl::Now();
    Outcome o;
    if (!netns && sc.netns) {
      o.scenario = sc.letter;
      o.reason = "network namespaces unavailable: " + why;
    } else {
      o = sc.run();
    }
    std::fprintf(stderr, "%s: %s %s (%.1f s)\n", o.scenario.c_str(), o.verdict.c_str(), o.reason.c_str(),
                 absl::ToDoubleSeconds(absl::Now() - start));
    if (!o.dir.empty()) {
      if (o.verdict == "failed" || getenv("RPCI_FAULTS_KEEP") != nullptr) {
        o.note += (o.note.empty() ? "logs: " : "; logs: ") + o.dir;
      } else {
        std::error_code ec;
        std::filesystem::remove_all(o.dir, ec);
      }
    }
    rows.push_back(o);
  }
  PrintTable(rows);
  int survived = 0, reported = 0, failed = 0, unavailable = 0;
  for (const Outcome& r : rows) {
    survived += r.verdict == "survived";
    reported += r.verdict == "reported";
    failed += r.verdict == "failed";
    unavailable += r.verdict == "not available";
  }
  std::printf("\nfaults: %d survived, %d reported as documented, %d failed, %d not available\n", survived, reported,
              failed, unavailable);
  return failed == 0 ? 0 : 1;
}
