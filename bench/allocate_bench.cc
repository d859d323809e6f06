// Allocate benchmark (not a test): Allocate -> session-ready latency through
// the real components on loopback, in one process: the controller
// (ControllerApp on its local store), the agent (AgentApp exporting rpci-emu
// devices over tcp;ofi_rxm), the device plugin (Plugin with the gRPC
// controller client and the agent session opener) and the fake kubelet
// speaking the device-plugin protocol over unix sockets.
//
// Each iteration allocates a healthy device for a new pod the way the kubelet
// does (Allocate: claim, session reserved on the agent, session dir and CDI
// spec written; then PreStartContainer, which the plugin answers only once
// the agent reports the session live) and times both; then, as no pod in
// pod-resources holds the device, the plugin's usage pass releases the
// session and the claim, so the next allocation finds the device free again.
// Prints one JSON object (allocate_ms_p50/p90/p99/max = Allocate +
// PreStartContainer; allocate_rpc_ms_*, prestart_ms_* the two parts), then a
// table (--json: only the JSON).
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <utility>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/app/agent_app.h"
#include "agent/app/real_device_backends.h"
#include "bench/stats.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/testing/wait.h"
#include "librpci/device.h"
#include "controller/controller_app.h"
#include "nlohmann/json.hpp"
#include "plugin/controller_client.h"
#include "plugin/plugin.h"
#include "plugin/session_opener.h"
#include "plugin/testing/test_env.h"
#include "tests/kubelet/fake_kubelet.h"

namespace {

using nlohmann::json;
using rpci::bench::Percentile;

constexpr char kResource[] = "rpci.io/emu";

// The workload's side, as a container's process does it: librpci opens the
// device from the environment the Allocate answer gave (key file path mapped
// back through the answer's mounts to the host), sets up rpci-emu's ring
// (docs/rpci-emu.md) and runs one COPY job to its first answered doorbell.
// `steps` gets the attach's own steps (client::AttachSteps, ms), the whole
// open ("open") and the ring set-up through the answered doorbell ("ring").
absl::StatusOr<std::unique_ptr<rpci::lib::Device>> AttachAndRing(const v1beta1::AllocateResponse& resp, json* steps) {
  if (resp.container_responses_size() != 1) return absl::InternalError("allocate: expected one container response");
  const v1beta1::ContainerAllocateResponse& c = resp.container_responses(0);
  std::map<std::string, std::string> env(c.envs().begin(), c.envs().end());
  for (auto& [name, value] : env) {
    for (const v1beta1::Mount& m : c.mounts()) {
      if (absl::StartsWith(value, m.container_path())) value = m.host_path() + value.substr(m.container_path().size());
    }
  }
  const absl::Time t0 = absl::Now();
  auto dev = rpci::lib::Device::OpenFromEnv(0, rpci::lib::MapEnv(env));
  if (!dev.ok()) return dev.status();
  const absl::Time t1 = absl::Now();
  rpci::lib::Device& d = **dev;
  const rpci::client::AttachSteps a = d.stats().last_attach;
  auto ms = [](absl::Duration x) { return absl::ToDoubleMilliseconds(x); };
  *steps = {{"open", ms(t1 - t0)},         {"channel", ms(a.channel)}, {"fabric", ms(a.fabric)},
            {"endpoint", ms(a.endpoint)},
            {"challenge", ms(a.challenge)}, {"open_rpc", ms(a.open_rpc)}, {"anchor", ms(a.anchor)},
            {"first_frame", ms(a.first_frame)}};
  constexpr uint64_t kDescSize = 64;
  auto ring = d.AllocDma(4 * kDescSize, 64);
  if (!ring.ok()) return ring.status();
  auto data = d.AllocDma(2 * 4096, 64);
  if (!data.ok()) return data.status();
  std::memset(ring->host, 0, ring->size);
  uint8_t* p = ring->host;  // descriptor 0: COPY 4 KiB, interrupt when done
  p[0] = 1;
  p[1] = 1;
  const uint32_t len = 4096;
  const uint64_t src = data->device_addr, dst = data->device_addr + 4096;
  std::memcpy(p + 4, &len, 4);
  std::memcpy(p + 8, &src, 8);
  std::memcpy(p + 16, &dst, 8);
  for (auto [reg, value] : {std::pair<uint64_t, uint32_t>{0x0C, 2},  // reset
                            {0x10, static_cast<uint32_t>(ring->device_addr)},
                            {0x14, static_cast<uint32_t>(ring->device_addr >> 32)},
                            {0x18, 4},
                            {0x2C, 3},
                            {0x0C, 1}}) {  // enable
    if (absl::Status s = d.Write32(0, reg, value); !s.ok()) return s;
  }
  if (absl::Status s = d.FlushToDevice(*ring, 0, kDescSize); !s.ok()) return s;
  if (absl::Status s = d.FlushToDevice(*data, 0, 4096); !s.ok()) return s;
  if (absl::Status s = d.RingDoorbell32(0, 0x24, 1); !s.ok()) return s;
  absl::StatusOr<rpci::lib::Completion> done = d.WaitCompletion(absl::Seconds(10));
  if (!done.ok()) return done.status();
  if (done->vector != 0) return absl::InternalError(absl::StrCat("COPY job raised vector ", done->vector));
  (*steps)["ring"] = ms(absl::Now() - t1);
  return dev;
}

// A healthy device of the latest ListAndWatch list (no pod holds one between
// iterations), rotating so that consecutive pods use different devices.
std::string NextHealthyDevice(const rpci::testing::FakeKubelet& kubelet, int iteration) {
  std::vector<std::string> healthy;
  for (const rpci::testing::AdvertisedDevice& d : kubelet.Devices(kResource)) {
    if (d.health == "Healthy") healthy.push_back(d.id);
  }
  if (healthy.empty()) return "";
  std::sort(healthy.begin(), healthy.end());
  return healthy[iteration % healthy.size()];
}

// The real controller client and session opener, timing the two remote steps
// of an Allocate: the controller's Claim and the agent's session reservation.
class TimedController final : public rpci::plugin::ControllerApi {
 public:
  explicit TimedController(rpci::plugin::ControllerApi* real) : real_(real) {}
  absl::StatusOr<rpci::v1::ClaimResponse> Claim(const rpci::v1::ClaimRequest& req) override {
    const absl::Time t0 = absl::Now();
    absl::StatusOr<rpci::v1::ClaimResponse> r = real_->Claim(req);
    last_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    return r;
  }
  absl::Status Release(const rpci::v1::ReleaseRequest& req) override { return real_->Release(req); }
  absl::Status ReportUsage(const rpci::v1::ReportUsageRequest& req) override { return real_->ReportUsage(req); }
  std::atomic<double> last_ms{0};

 private:
  rpci::plugin::ControllerApi* const real_;
};

class TimedSessions final : public rpci::plugin::SessionOpener {
 public:
  explicit TimedSessions(rpci::plugin::SessionOpener* real) : real_(real) {}
  absl::StatusOr<rpci::plugin::AttachedSession> Open(const rpci::v1::SessionGrant& grant,
                                                     const std::string& endpoint) override {
    const absl::Time t0 = absl::Now();
    absl::StatusOr<rpci::plugin::AttachedSession> r = real_->Open(grant, endpoint);
    last_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    return r;
  }
  absl::Status Close(const rpci::plugin::AttachedSession& s) override { return real_->Close(s); }
  absl::Status Check(const rpci::plugin::AttachedSession& s) override { return real_->Check(s); }
  absl::Status ProbeAgent(const std::string& endpoint, absl::Duration timeout) override {
    return real_->ProbeAgent(endpoint, timeout);
  }
  std::atomic<double> last_ms{0};

 private:
  rpci::plugin::SessionOpener* const real_;
};

rpci::agent::AgentOptions BenchAgentOptions(int devices, const std::string& controller, const std::string& state_dir) {
  rpci::agent::AgentOptions ao;
  ao.node = "bench-device-server";
  ao.controller = controller;
  ao.tls.insecure = true;
  ao.session_listen = "127.0.0.1:0";
  ao.http_listen = "";
  ao.state_dir = state_dir;
  ao.fabric.provider = "tcp;ofi_rxm";
  ao.fabric.node = "127.0.0.1";
  rpci::agent::EmuDevicesConfig emu;
  emu.pool = "emu";
  emu.count = devices;
  ao.emu = {emu};
  return ao;
}

// An agent on its own (a forked child, nothing else in the process) with
// `devices` rpci-emu devices, idle for `idle`: its RSS, anonymous RSS and
// threads. Its controller does not answer (as before registration).
json AgentIdleMemory(int devices, const std::string& state_dir, absl::Duration idle) {
  return rpci::bench::RunInChild(
      [&]() -> absl::StatusOr<json> {
        std::filesystem::create_directories(state_dir);
        auto agent = rpci::agent::AgentApp::Create(BenchAgentOptions(devices, "127.0.0.1:1", state_dir),
                                                   rpci::agent::RealDeviceBackends());
        if (!agent.ok()) return agent.status();
        if (absl::Status s = (*agent)->Start(); !s.ok()) return s;
        absl::SleepFor(idle);
        json out = {{"devices", devices},
                    {"rss_mb", rpci::bench::RssMb()},
                    {"rss_anon_mb", rpci::bench::RssAnonMb()},
                    {"threads", rpci::bench::Threads()}};
        (*agent)->Stop();
        return out;
      },
      {{"devices", devices}}, 60);
}

// The controller on its local store in `dir`/controller, keeping `devices`
// spares, started on loopback.
absl::StatusOr<std::unique_ptr<rpci::controller::ControllerApp>> StartController(int devices, const std::string& dir) {
  rpci::controller::ControllerOptions co;
  co.store = "local";
  co.state_dir = dir + "/controller";
  co.tls.insecure = true;
  co.listen = "127.0.0.1:0";
  co.http_listen = "127.0.0.1:0";
  co.reconcile_interval = absl::Milliseconds(20);
  co.default_spares = devices;
  absl::StatusOr<std::unique_ptr<rpci::controller::ControllerApp>> controller =
      rpci::controller::ControllerApp::Create(co);
  if (!controller.ok()) return controller.status();
  if (absl::Status s = (*controller)->Start(); !s.ok()) return s;
  return controller;
}

// The timings of the admitted pods (after the warm-up), in ms, and the
// failures.
struct Samples {
  std::vector<double> allocate_ms, ready_ms, attach_ms, rpc_ms, prestart_ms, claim_ms, open_ms;
  std::vector<json> detail;  // each pod's parts and the attach's steps, ms
  int errors = 0;
  std::string first_error;
};

// One pod on `device`: Allocate and PreStartContainer as the kubelet calls
// them for a new pod, then the workload's attach and first doorbell; timed
// into `samples` when `timed`, a failure counted either way.
void AdmitOnePod(rpci::testing::FakeKubelet& kubelet, const std::string& device, bool timed,
                 const TimedController& timed_controller, const TimedSessions& sessions, Samples* samples) {
  v1beta1::AllocateRequest req;
  req.add_container_requests()->add_devices_ids(device);
  const absl::Time t0 = absl::Now();
  absl::StatusOr<v1beta1::AllocateResponse> allocated = kubelet.Allocate(kResource, req);
  const absl::Time t1 = absl::Now();
  absl::Status prestart = allocated.ok() ? kubelet.PreStartContainer(kResource, {device}) : allocated.status();
  const absl::Time t2 = absl::Now();
  json steps = json::object();
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> workload =
      prestart.ok() ? AttachAndRing(*allocated, &steps) : absl::StatusOr<std::unique_ptr<rpci::lib::Device>>(prestart);
  const absl::Time t3 = absl::Now();
  if (workload.ok()) {
    (*workload)->Close().IgnoreError();
  } else {
    prestart = workload.status();
  }
  if (!prestart.ok()) {
    ++samples->errors;
    if (samples->first_error.empty()) samples->first_error = prestart.ToString();
  } else if (timed) {
    samples->allocate_ms.push_back(absl::ToDoubleMilliseconds(t3 - t0));
    samples->ready_ms.push_back(absl::ToDoubleMilliseconds(t2 - t0));
    samples->attach_ms.push_back(absl::ToDoubleMilliseconds(t3 - t2));
    samples->rpc_ms.push_back(absl::ToDoubleMilliseconds(t1 - t0));
    samples->prestart_ms.push_back(absl::ToDoubleMilliseconds(t2 - t1));
    samples->claim_ms.push_back(timed_controller.last_ms);
    samples->open_ms.push_back(sessions.last_ms);
    steps["allocate_rpc"] = samples->rpc_ms.back();
    steps["claim"] = samples->claim_ms.back();
    steps["agent_reserve"] = samples->open_ms.back();
    steps["prestart"] = samples->prestart_ms.back();
    samples->detail.push_back(std::move(steps));
  }
}

// The figures from `s` (at least one timed pod).
json Summary(const Samples& s, int devices, double seconds) {
  double sum = 0;
  for (double v : s.allocate_ms) sum += v;
  json out = {{"benchmark", "allocate"},
              {"transport", "tcp;ofi_rxm on loopback"},
              {"devices", devices},
              {"iterations", static_cast<int>(s.allocate_ms.size())},
              {"errors", s.errors},
              {"allocate_ms_p50", Percentile(s.allocate_ms, 0.50)},
              {"allocate_ms_p90", Percentile(s.allocate_ms, 0.90)},
              {"allocate_ms_p99", Percentile(s.allocate_ms, 0.99)},
              {"allocate_ms_max", *std::max_element(s.allocate_ms.begin(), s.allocate_ms.end())},
              {"allocate_ms_mean", sum / s.allocate_ms.size()},
              {"allocate_ms_includes", "Allocate + PreStartContainer + workload attach (librpci) + first answered doorbell (COPY 4 KiB on rpci-emu)"},
              {"session_ready_ms_p50", Percentile(s.ready_ms, 0.50)},
              {"session_ready_ms_p99", Percentile(s.ready_ms, 0.99)},
              {"workload_attach_doorbell_ms_p50", Percentile(s.attach_ms, 0.50)},
              {"workload_attach_doorbell_ms_p99", Percentile(s.attach_ms, 0.99)},
              {"allocate_rpc_ms_p50", Percentile(s.rpc_ms, 0.50)},
              {"allocate_rpc_ms_p99", Percentile(s.rpc_ms, 0.99)},
              {"claim_ms_p50", Percentile(s.claim_ms, 0.50)},
              {"claim_ms_p99", Percentile(s.claim_ms, 0.99)},
              {"open_session_ms_p50", Percentile(s.open_ms, 0.50)},
              {"open_session_ms_p99", Percentile(s.open_ms, 0.99)},
              {"prestart_ms_p50", Percentile(s.prestart_ms, 0.50)},
              {"prestart_ms_p99", Percentile(s.prestart_ms, 0.99)},
              {"target_p99_ms", 20},
              // The slow pods (p90 and up), part by part.
              {"allocate_slow_ms", rpci::bench::TailSamples(s.allocate_ms, s.detail, 0.9)},
              {"wall_seconds", seconds}};
  if (!s.first_error.empty()) out["first_error"] = s.first_error;
  return out;
}

// `dir`: the controller's store and the agent's checkpoint (disk, as
// /var/lib on a node); `run_dir`: the kubelet sockets, the plugin's session
// dirs and CDI specs (tmpfs, as /var/run on a node).
absl::StatusOr<json> Run(int devices, int iterations, int warmup, const std::string& dir, const std::string& run_dir) {
  absl::StatusOr<std::unique_ptr<rpci::controller::ControllerApp>> controller = StartController(devices, dir);
  if (!controller.ok()) return controller.status();
  const std::string controller_address = absl::StrCat("127.0.0.1:", (*controller)->grpc_port());

  absl::StatusOr<std::unique_ptr<rpci::agent::AgentApp>> agent = rpci::agent::AgentApp::Create(
      BenchAgentOptions(devices, controller_address, dir + "/agent"), rpci::agent::RealDeviceBackends());
  if (!agent.ok()) return agent.status();
  if (absl::Status s = (*agent)->Start(); !s.ok()) return s;

  // The tests' plugin (node cn-1, pool emu) on the fake kubelet's sockets;
  // usage is read only by the explicit release pass below.
  rpci::testing::FakeKubelet kubelet(run_dir + "/dp", run_dir + "/pr.sock");
  if (absl::Status s = kubelet.Start(); !s.ok()) return s;
  rpci::plugin::PluginOptions po = rpci::plugin::testing::TestPluginOptions(run_dir);
  po.container_dir = run_dir + "/container";
  po.release_grace = absl::ZeroDuration();
  rpci::plugin::GrpcControllerClient controller_client(
      grpc::CreateChannel(controller_address, grpc::InsecureChannelCredentials()));
  rpci::plugin::AgentSessionOpener real_sessions(nullptr, po.node_name);
  TimedController timed_controller(&controller_client);
  TimedSessions sessions(&real_sessions);
  rpci::plugin::Plugin plugin(po, &timed_controller, &sessions);
  if (absl::Status s = plugin.Start(); !s.ok()) return s;
  rpci::v1::RegisterNodeRequest node;
  node.set_node(po.node_name);
  node.add_pools("emu");
  controller_client.StartAssignmentWatch(node, [&](const rpci::v1::AssignmentSet& set) { plugin.SetAssignments(set); });

  auto stop = [&] {
    controller_client.Stop();
    plugin.Stop();
    kubelet.Stop();
    (*agent)->Stop();
    (*controller)->Stop();
  };
  auto all_healthy = [&] {
    int healthy = 0;
    for (const auto& d : kubelet.Devices(kResource)) healthy += d.health == "Healthy";
    return healthy == devices;
  };
  if (!rpci::testing::WaitFor(all_healthy, absl::Seconds(30), absl::Milliseconds(2))) {
    stop();
    return absl::DeadlineExceededError(
        absl::StrCat("the kubelet did not see ", devices, " healthy devices within 30 s"));
  }

  Samples samples;
  const absl::Time started = absl::Now();
  for (int i = 0; i < warmup + iterations; ++i) {
    std::string device;
    if (!rpci::testing::WaitFor([&] { return !(device = NextHealthyDevice(kubelet, i)).empty(); }, absl::Seconds(10),
                               absl::Milliseconds(2))) {
      stop();
      return absl::DeadlineExceededError(absl::StrCat("iteration ", i, ": no free healthy device within 10 s"));
    }
    AdmitOnePod(kubelet, device, i >= warmup, timed_controller, sessions, &samples);
    // No pod holds the device (pod-resources): session closed, claim released.
    plugin.SyncUsage().IgnoreError();
    // The released device comes back as a healthy spare before it is reused.
    rpci::testing::WaitFor([&] { return all_healthy() && plugin.SessionDevices().empty(); }, absl::Seconds(5),
                           absl::Milliseconds(2));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  stop();
  if (samples.allocate_ms.empty()) return absl::InternalError("no Allocate succeeded: " + samples.first_error);
  return Summary(samples, devices, seconds);
}

// The figures as a table (after the JSON line).
void PrintTable(const json& r) {
  std::printf("\nAllocate -> session ready (Allocate + PreStartContainer), %d pods over %d rpci-emu devices, %s\n",
              r["iterations"].get<int>(), r["devices"].get<int>(), r["transport"].get<std::string>().c_str());
  std::printf("%-22s %10s %10s %10s %10s %10s %8s %12s\n", "", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms",
              "errors", "target_p99");
  std::printf("%-22s %10.2f %10.2f %10.2f %10.2f %10.2f %8d %9s %s\n", "Alloc+Pre+attach+DB", r["allocate_ms_p50"].get<double>(),
              r["allocate_ms_p90"].get<double>(), r["allocate_ms_p99"].get<double>(),
              r["allocate_ms_max"].get<double>(), r["allocate_ms_mean"].get<double>(), r["errors"].get<int>(),
              "<= 20 ms", r["allocate_ms_p99"].get<double>() <= 20 ? "(met)" : "(missed)");
  std::printf("%-22s %10.2f %10s %10.2f\n", "  session ready", r["session_ready_ms_p50"].get<double>(), "",
              r["session_ready_ms_p99"].get<double>());
  std::printf("%-22s %10.2f %10s %10.2f\n", "  attach + doorbell", r["workload_attach_doorbell_ms_p50"].get<double>(), "",
              r["workload_attach_doorbell_ms_p99"].get<double>());
  std::printf("%-22s %10.2f %10s %10.2f\n", "  Allocate RPC", r["allocate_rpc_ms_p50"].get<double>(), "",
              r["allocate_rpc_ms_p99"].get<double>());
  std::printf("%-22s %10.2f %10s %10.2f\n", "    controller Claim", r["claim_ms_p50"].get<double>(), "",
              r["claim_ms_p99"].get<double>());
  std::printf("%-22s %10.2f %10s %10.2f\n", "    agent OpenSession", r["open_session_ms_p50"].get<double>(), "",
              r["open_session_ms_p99"].get<double>());
  std::printf("%-22s %10.2f %10s %10.2f\n", "  PreStartContainer", r["prestart_ms_p50"].get<double>(), "",
              r["prestart_ms_p99"].get<double>());
}

}  // namespace

int main(int argc, char** argv) {
  bool json_only = false;
  int64_t devices = 4, iterations = 200, warmup = 5;
  rpci::FlagSet flags("bench/allocate [flags]",
                      "Allocate -> session-ready latency (Allocate + PreStartContainer as the kubelet calls them) "
                      "through the real plugin, controller and agent on loopback, for fresh pods.");
  rpci::bench::AddJsonFlag(flags, &json_only);
  flags.Int("devices", &devices, "rpci-emu devices the agent exports (pods cycle over them)");
  flags.Int("iterations", &iterations, "pods admitted and timed");
  flags.Int("warmup", &warmup, "pods admitted first and not timed");
  std::string disk_dir = "/tmp", run_dir = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  flags.String("dir", &disk_dir, "where the controller's local store and the agent's checkpoint go (a node's /var/lib)");
  flags.String("run_dir", &run_dir,
               "where kubelet sockets, the plugin's session dirs and CDI specs go (a node's /var/run, tmpfs)");
  flags.Require([&] { return devices >= 1 && iterations >= 1 && warmup >= 0; },
                "--devices and --iterations must be positive, --warmup not negative");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  rpci::Logger::SetMinLevel(rpci::LogLevel::kError);
  std::string dirs[2];
  for (int i = 0; i < 2; ++i) {
    std::string tmpl = (i == 0 ? disk_dir : run_dir) + "/rpci-allocate-bench-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::cerr << "cannot create a temp dir in " << (i == 0 ? disk_dir : run_dir) << "\n";
      return 1;
    }
    dirs[i] = tmpl;
  }
  for (const char* d : {"controller", "agent"}) std::filesystem::create_directories(dirs[0] + "/" + d);
  for (const char* d : {"kubelet", "cdi", "plugin-state"}) std::filesystem::create_directories(dirs[1] + "/" + d);
  // Before any thread starts here: the children fork a one-thread process.
  const json agent_1 = AgentIdleMemory(1, dirs[0] + "/idle-agent-1", absl::Seconds(2));
  const json agent_8 = AgentIdleMemory(8, dirs[0] + "/idle-agent-8", absl::Seconds(2));
  absl::StatusOr<json> result =
      Run(static_cast<int>(devices), static_cast<int>(iterations), static_cast<int>(warmup), dirs[0], dirs[1]);
  std::error_code ec;
  for (const std::string& d : dirs) std::filesystem::remove_all(d, ec);
  if (result.ok()) {
    (*result)["disk_dir"] = disk_dir;
    (*result)["run_dir"] = run_dir;
    (*result)["agent_idle_1_device"] = agent_1;
    (*result)["agent_idle_8_devices"] = agent_8;
    if (agent_1.contains("rss_mb") && agent_8.contains("rss_mb")) {
      (*result)["agent_idle_rss_mb"] = agent_1["rss_mb"];
      (*result)["agent_rss_mb_per_device"] = (agent_8["rss_mb"].get<double>() - agent_1["rss_mb"].get<double>()) / 7;
    }
  }
  if (!result.ok()) {
    std::cerr << "allocate bench: " << result.status() << "\n";
    return 1;
  }
  rpci::bench::PrintResult(*result, json_only, PrintTable);
  return 0;
}
