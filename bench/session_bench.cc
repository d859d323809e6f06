// Session benchmarks (not a test): DMA mirror throughput vs loopback TCP,
// doorbell->completion RTT vs TCP ping-pong, session open latency.
//   bazel run //bench:session -- [--json]

#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/backends/emu_backend.h"
#include "agent/session/session_server.h"
#include "agent/session/throttle.h"
#include "agent/session/testing/loopback_server.h"
#include "agent/session/testing/test_device.h"
#include "bench/device_roundtrip.h"
#include "bench/fabric_pair.h"
#include "bench/stats.h"
#include "bench/tcp_baseline.h"
#include "client/session_client.h"
#include "common/fabric/fabric.h"
#include "common/fabric/fabric_flags.h"
#include "common/flags.h"
#include "grpcpp/grpcpp.h"
#include "librpci/device.h"
#include "nlohmann/json.hpp"
#include "session/wire.h"

namespace {

using rpci::bench::Percentile;
using rpci::bench::TcpConnectUs;
using rpci::bench::TcpGbps;
using rpci::bench::TcpRttUs;
using Clock = std::chrono::steady_clock;
int Fail(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "session bench: %s: %s\n", what, std::string(s.message()).c_str());
  return 1;
}

double Secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The fabric's own ping-pong: `bytes`-long messages over common/fabric
// between two endpoints on separate fabrics opened with `config` (the
// session's provider and endpoint settings), one echoing on its own thread
// for as long as this object lives, so samples can be taken in blocks
// between other measurements.
class FabricPingPong {
 public:
  static absl::StatusOr<std::unique_ptr<FabricPingPong>> Open(const rpci::fabric::FabricConfig& config,
                                                              size_t bytes) {
    absl::StatusOr<rpci::bench::FabricPair> pair = rpci::bench::OpenFabricPair(config);
    if (!pair.ok()) return pair.status();
    return std::unique_ptr<FabricPingPong>(new FabricPingPong(*std::move(pair), bytes));
  }
  ~FabricPingPong() {
    stop_ = true;
    echo_.join();
  }
  std::thread& echo_thread() { return echo_; }

  // `n` round trips in us, after `warmup` unmeasured ones.
  absl::StatusOr<std::vector<double>> Rtts(int n, int warmup) {
    std::vector<double> us;
    for (int i = 0; i < n + warmup; ++i) {
      auto t0 = Clock::now();
      if (absl::Status st = pair_.a->Send(pair_.a_to_b, msg_); !st.ok()) return st;
      if (absl::Status st = pair_.a->Recv(absl::Seconds(10)).status(); !st.ok()) return st;
      if (i >= warmup) us.push_back(Secs(Clock::now() - t0) * 1e6);
    }
    return us;
  }

 private:
  FabricPingPong(rpci::bench::FabricPair pair, size_t bytes) : pair_(std::move(pair)), msg_(bytes, 'd') {
    echo_ = std::thread([this] {
      while (!stop_) {
        absl::StatusOr<std::string> m = pair_.b->Recv(absl::Milliseconds(50));
        if (m.ok() && !pair_.b->Send(pair_.b_to_a, *m).ok()) return;
      }
    });
  }
  rpci::bench::FabricPair pair_;
  const std::string msg_;
  std::atomic<bool> stop_{false};
  std::thread echo_;
};

// Where the threads of both round trips run while they are measured. On two
// CPUs or more the caller (this thread) runs on the first allowed CPU and the
// threads answering it (the fabric ping-pong's echo thread, the agent's
// session workers, named "rpci-session") on the second: otherwise each round
// trip settles for a whole run on one CPU (~40 us here) or on two (~85 us),
// independently, and their ratio shows the placement, not the session
// (docs/benchmarks.md, top). Restored when it goes. One CPU: nothing moved.
class Placement {
 public:
  explicit Placement(std::thread& echo) {
    CPU_ZERO(&allowed_);
    if (sched_getaffinity(0, sizeof(allowed_), &allowed_) != 0 || CPU_COUNT(&allowed_) < 2) return;
    std::vector<int> cpus;
    for (int i = 0; i < CPU_SETSIZE && cpus.size() < 2; ++i) {
      if (CPU_ISSET(i, &allowed_)) cpus.push_back(i);
    }
    caller_cpu_ = cpus[0];
    answer_cpu_ = cpus[1];
    Pin(0, caller_cpu_);
    if (pthread_setaffinity_np(echo.native_handle(), sizeof(cpu_set_t), One(answer_cpu_).get()) == 0) {
      echo_ = echo.native_handle();
    }
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      std::getline(comm, name);
      if (name == "rpci-session" && Pin(std::stoi(task.path().filename().string()), answer_cpu_)) ++workers_;
    }
  }
  ~Placement() {
    for (pid_t tid : pinned_) sched_setaffinity(tid, sizeof(allowed_), &allowed_);
    if (echo_.has_value()) pthread_setaffinity_np(*echo_, sizeof(allowed_), &allowed_);
  }
  nlohmann::json Describe() const {
    if (caller_cpu_ < 0) return "unpinned (one CPU)";
    return {{"caller_cpu", caller_cpu_}, {"answer_cpu", answer_cpu_}, {"session_workers", workers_}};
  }

 private:
  static std::unique_ptr<cpu_set_t> One(int cpu) {
    auto set = std::make_unique<cpu_set_t>();
    CPU_ZERO(set.get());
    CPU_SET(cpu, set.get());
    return set;
  }
  bool Pin(pid_t tid, int cpu) {
    if (sched_setaffinity(tid, sizeof(cpu_set_t), One(cpu).get()) != 0) return false;
    pinned_.push_back(tid);
    return true;
  }
  cpu_set_t allowed_;  // the process's CPUs before, restored to every thread pinned
  int caller_cpu_ = -1, answer_cpu_ = -1, workers_ = 0;
  std::vector<pid_t> pinned_;
  std::optional<pthread_t> echo_;
};

// Doorbell -> completion round trips (an empty copy job), in microseconds,
// after `warmup` unmeasured ones.
absl::StatusOr<std::vector<double>> DoorbellRtts(rpci::client::SessionClient& c, int n, int warmup) {
  std::vector<double> rtt;
  for (int i = 0; i < n + warmup; ++i) {
    auto t0 = Clock::now();
    if (absl::Status st = c.Write(0, rpci::agent::testing::TestDevice::kDoorbell, 8, i); !st.ok()) return st;
    if (auto done = c.WaitCompletion(absl::Seconds(5)); !done.ok()) return done.status();
    if (i >= warmup) rtt.push_back(Secs(Clock::now() - t0) * 1e6);
  }
  return rtt;
}

// Another tenant on another device floods the same agent: every doorbell is a
// job whose completion makes the agent push its whole DMA space (mapped
// from-device) first, rung again as soon as it completes.
class Flood {
 public:
  // `nice`: how much nicer the flooding client's thread runs (0: as the
  // rest), as a bulk workload on a shared host would be configured.
  Flood(rpci::client::SessionClient* c, int nice) : c_(c), nice_(nice) {
    if (c_->MapFromDevice(0, c_->dma_size()).ok()) thread_ = std::thread([this] { Run(); });
  }
  ~Flood() {
    Resume();
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t jobs() const { return jobs_; }
  // The flood's own throughput since `since` (jobs() then): DMA bytes pushed
  // per second, Gbit/s.
  double gbps(uint64_t jobs_then, Clock::time_point since) const {
    return double(jobs_ - jobs_then) * c_->dma_size() * 8 / Secs(Clock::now() - since) / 1e9;
  }
  // Stops ringing once the job in flight has completed (returns then), and
  // starts again.
  void Pause() {
    std::unique_lock<std::mutex> lock(mu_);
    paused_ = true;
    cv_.wait(lock, [&] { return idle_ || !thread_.joinable() || done_; });
  }
  void Resume() {
    std::lock_guard<std::mutex> lock(mu_);
    paused_ = false;
    cv_.notify_all();
  }

 private:
  void Run() {
    if (absl::StatusOr<int> base = rpci::agent::ThreadNice(); nice_ > 0 && base.ok()) {
      rpci::agent::SetThreadNice(std::min(19, *base + nice_)).IgnoreError();
    }
    for (uint64_t i = 0; !stop_; ++i) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        idle_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !paused_ || stop_; });
        idle_ = false;
      }
      if (!c_->Write(0, rpci::agent::testing::TestDevice::kDoorbell, 8, i).ok() ||
          !c_->WaitCompletion(absl::Seconds(5)).ok()) {
        break;
      }
      ++jobs_;
    }
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
  rpci::client::SessionClient* c_;
  const int nice_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool paused_ = false, idle_ = false, done_ = false;  // under mu_
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> jobs_{0};
  std::thread thread_;
};

// What a session costs the agent while it exists (its own fabric domain,
// endpoint and worker): RSS and threads before and after reserving `n`
// sessions on idle devices (reserve only: nothing of a client's in the
// process but its gRPC call), then closed again.
absl::Status SessionMemory(rpci::agent::SessionServer& server, const std::string& endpoint, int n,
                           nlohmann::json* out) {
  const double rss0 = rpci::bench::RssMb();
  const int threads0 = rpci::bench::Threads();
  std::vector<rpci::client::SessionTicket> tickets;
  for (int i = 0; i < n; ++i) {
    auto t = rpci::client::ControlClient().Reserve(endpoint, {"bench-idle-" + std::to_string(i), "token", "node"});
    if (!t.ok()) return t.status();
    tickets.push_back(*t);
  }
  // Each session's worker opens its domain and endpoint after the reservation.
  for (const auto& t : tickets) {
    for (int i = 0; i < 1000 && !server.fabric_address(t.session_id).ok(); ++i) absl::SleepFor(absl::Milliseconds(5));
  }
  absl::SleepFor(absl::Milliseconds(100));
  (*out)["agent_rss_mb_per_session"] = (rpci::bench::RssMb() - rss0) / n;
  (*out)["agent_threads_per_session"] = double(rpci::bench::Threads() - threads0) / n;
  for (const auto& t : tickets) {
    if (absl::Status st = rpci::client::ControlClient().Close(t); !st.ok()) return st;
  }
  return absl::OkStatus();
}

// Times sessions were throttled so far (rpci_session_throttled_total).
double ThrottledPushes(const rpci::MetricsRegistry& metrics) {
  std::istringstream text(metrics.Render());
  for (std::string line; std::getline(text, line);) {
    if (line.rfind("rpci_session_throttled_total ", 0) == 0) return std::stod(line.substr(line.find(' ') + 1));
  }
  return 0;
}

// The device round trip (bench/device_roundtrip.h) on the rpci-emu device
// granted as "bench-emu", in its own session.
absl::Status RoundTrips(const std::string& endpoint, const rpci::client::ClientOptions& opts, int scale,
                        nlohmann::json* out) {
  auto ticket = rpci::client::ControlClient().Reserve(endpoint, {"bench-emu", "token", "node"});
  if (!ticket.ok()) return ticket.status();
  auto c = rpci::client::SessionClient::Attach(*ticket, opts);
  if (!c.ok()) return c.status();
  rpci::bench::RoundTripPlan plan;
  plan.fabric = opts.fabric;
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  for (auto [n, pairs] : {std::pair<uint64_t, int>{4096, 400}, {65536, 400}, {kMiB, 400}, {16 * kMiB, 40}}) {
    plan.sizes.push_back({n, std::max(5, pairs / scale)});
  }
  plan.invalidate_sizes = {{kMiB, std::max(5, 200 / scale)}};
  absl::StatusOr<nlohmann::json> rt = rpci::bench::DeviceRoundTrips(**c, plan);
  (*c)->Close().IgnoreError();
  if (absl::Status st = rpci::client::ControlClient().Close(*ticket); !st.ok()) return st;
  if (!rt.ok()) return rt.status();
  (*out)["device_roundtrip_invalidate_by_size"] = (*rt)["invalidate"];
  rt->erase("invalidate");
  (*out)["device_roundtrip_by_size"] = *rt;
  const nlohmann::json& mib = (*rt)[std::to_string(1 << 20)];
  (*out)["device_roundtrip_ratio_1mib"] = mib["ratio_vs_tcp"];
  (*out)["device_roundtrip_floor_ratio_1mib"] = mib["floor_vs_tcp"];
  (*out)["device_roundtrip_floor_vs_device_1mib"] = mib["floor_vs_device"];
  (*out)["device_roundtrip_invalidate_ratio_1mib"] =
      (*out)["device_roundtrip_invalidate_by_size"][std::to_string(1 << 20)]["ratio_vs_tcp"];
  (*out)["device_roundtrip_measures"] =
      "rpci-emu: FlushDma of N bytes, COPY job, result pushed back before the completion (MapFromDevice); "
      "TCP: request/response of N bytes each way on one warm loopback connection; floor: the fabric's own RMA "
      "write of N bytes plus a message each way (no doorbell, no device); samples interleaved; "
      "ratio = TCP p50 / device p50";
  return absl::OkStatus();
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// Minor page faults of this process so far.
double MinorFaults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_minflt);
}

// CPU time of this process's threads so far (user + system), ms.
double CpuMs() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

// One attach's steps as the client measured them (client::AttachSteps), ms.
nlohmann::json StepsJson(const rpci::client::AttachSteps& a) {
  return {{"channel", Ms(a.channel)},     {"fabric", Ms(a.fabric)},     {"shape", Ms(a.shape)},
          {"endpoint", Ms(a.endpoint)},   {"endpoint_open", Ms(a.endpoint_open)},
          {"challenge", Ms(a.challenge)},
          {"open_rpc", Ms(a.open_rpc)},   {"anchor", Ms(a.anchor)},     {"first_frame", Ms(a.first_frame)},
          {"total", Ms(a.total)}};
}

// The agent's side of each attach (inside the client's open_rpc step), read
// from its "session attached" log lines: waiting for the session's endpoint,
// registering this attach's regions, pushing the mirrors.
class AgentAttachLog {
 public:
  AgentAttachLog() {
    rpci::Logger::SetSink(&sink_);
    rpci::Logger::SetMinLevel(rpci::LogLevel::kInfo);
  }
  ~AgentAttachLog() { Stop(); }
  void Stop() {
    rpci::Logger::SetMinLevel(rpci::LogLevel::kError);
    rpci::Logger::SetSink(&std::cerr);
  }
  // Step name -> one value (ms) per attach, in order.
  std::map<std::string, std::vector<double>> Steps() const {
    std::map<std::string, std::vector<double>> steps;
    for (const nlohmann::json& a : PerAttach()) {
      for (auto& [k, v] : a.items()) steps[k].push_back(v.get<double>());
    }
    return steps;
  }
  // One object per attach, in order: step (wait_endpoint_us, ...) -> ms.
  std::vector<nlohmann::json> PerAttach() const {
    std::vector<nlohmann::json> out;
    std::istringstream in(sink_.str());
    for (std::string line; std::getline(in, line);) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || j.value("msg", "") != "session attached") continue;
      nlohmann::json a = nlohmann::json::object();
      for (const char* k : {"wait_endpoint_us", "fabric_open_start_us", "fabric_open_us", "register_us", "push_us"}) {
        if (j.contains(k) && j[k].is_number()) a[k] = j[k].get<double>() / 1e3;
      }
      out.push_back(std::move(a));
    }
    return out;
  }
 private:
  std::ostringstream sink_;
};

// p50 and max of each step over a run of attaches.
nlohmann::json StepSummary(const std::vector<nlohmann::json>& attaches,
                           const std::map<std::string, std::vector<double>>& agent) {
  nlohmann::json out = nlohmann::json::object();
  std::map<std::string, std::vector<double>> by_step;
  for (const nlohmann::json& a : attaches) {
    for (auto& [k, v] : a.items()) by_step[k].push_back(v.get<double>());
  }
  for (const auto& [k, v] : agent) by_step["agent_" + k.substr(0, k.size() - 3)] = v;
  for (const auto& [k, v] : by_step) out[k] = {{"p50", Percentile(v, 0.5)}, {"max", Percentile(v, 1.0)}};
  return out;
}

// --attach_once: what a workload does, in this fresh process: the ticket
// and the session's shape, as the plugin's environment gives them
// ("endpoint session-id key-hex bars dma-size") on stdin, attach through librpci, print
// the attach's time and steps as one JSON line, detach.
int AttachOnce(const rpci::fabric::FabricConfig& fabric) {
  std::string endpoint, id, key, bars;
  uint64_t dma_size = 0;
  if (!(std::cin >> endpoint >> id >> key >> bars >> dma_size)) {
    return Fail("attach_once", absl::InvalidArgumentError("no ticket on stdin"));
  }
  rpci::lib::DeviceConfig config;
  config.endpoint = endpoint;
  absl::StatusOr<rpci::session::SessionId> sid = rpci::session::SessionId::Parse(id);
  absl::StatusOr<rpci::session::SessionKey> skey = rpci::session::SessionKey::FromHex(key);
  if (!sid.ok() || !skey.ok()) return Fail("attach_once", absl::InvalidArgumentError("bad ticket"));
  config.session_id = *sid;
  config.key = *skey;
  absl::StatusOr<std::vector<rpci::client::BarMirror>> bar_list = rpci::client::ParseBarList(bars);
  if (!bar_list.ok()) return Fail("attach_once", bar_list.status());
  config.bars = *bar_list;
  config.dma_size = dma_size;
  config.fabric_provider = fabric.provider;
  config.fabric_node = fabric.node;
  const double cpu0 = CpuMs(), faults0 = MinorFaults();
  auto t0 = Clock::now();
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> dev = rpci::lib::Device::Open(config);
  const double ms = Secs(Clock::now() - t0) * 1e3;
  if (!dev.ok()) return Fail("attach_once", dev.status());
  nlohmann::json out = StepsJson((*dev)->stats().last_attach);
  out["attach"] = ms;
  out["attach_cpu"] = CpuMs() - cpu0;  // all the process's threads, whatever else runs
  out["attach_faults"] = MinorFaults() - faults0;
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
  // The workload detaches as librpci's close does; the parent (the plugin)
  // closes the session.
  if (absl::Status st = (*dev)->Close(); !st.ok()) return Fail("attach_once: close", st);
  return 0;
}

// Runs this binary again with --attach_once for `ticket`; its JSON line.
absl::StatusOr<nlohmann::json> AttachInFreshProcess(const std::vector<std::string>& args,
                                                    const rpci::client::SessionTicket& ticket) {
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) return absl::InternalError("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  for (int fd : {in[0], in[1], out[0], out[1]}) posix_spawn_file_actions_addclose(&fa, fd);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  if (rc == 0) {
    // The ticket and the session's shape, as the plugin gives a container.
    const std::string line = ticket.endpoint + " " + ticket.session_id.ToString() + " " + ticket.key.Hex() + " " +
                             rpci::client::FormatBarList(ticket.bars) + " " + std::to_string(ticket.dma_size) + "\n";
    const ssize_t written = write(in[1], line.data(), line.size());  // a short write fails the child
    (void)written;
  }
  close(in[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) > 0;) text.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  if (rc != 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError("the --attach_once process failed");
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InternalError("the --attach_once process printed no JSON");
  return j;
}

// A workload's first attach, `n` times: a fresh process (this binary again,
// `args`) attaches through librpci, paying libfabric's provider
// initialisation, its first endpoint and connection and its first gRPC
// channel. first_open = the reserve here + the child's attach.
absl::Status FreshAttaches(const std::vector<std::string>& args, const std::string& endpoint, int n,
                           nlohmann::json* out) {
  if (n <= 0) return absl::OkStatus();
  std::vector<double> first_open, first_attach, first_cpu, first_faults;
  std::vector<nlohmann::json> steps;
  AgentAttachLog log;
  rpci::client::ControlClient plugin;  // one channel for all reservations, as the plugin's
  if (absl::Status st = plugin.Probe(endpoint, absl::Seconds(5)); !st.ok()) return st;  // as OpenLatency's
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    auto ticket = plugin.Reserve(endpoint, {"bench", "token", "node"});
    if (!ticket.ok()) return ticket.status();
    const double reserve = Secs(Clock::now() - t0) * 1e3;
    absl::StatusOr<nlohmann::json> child = AttachInFreshProcess(args, *ticket);
    if (!child.ok()) return child.status();
    first_attach.push_back((*child)["attach"].get<double>());
    first_open.push_back(reserve + first_attach.back());
    first_cpu.push_back((*child)["attach_cpu"].get<double>());
    first_faults.push_back((*child)["attach_faults"].get<double>());
    for (const char* k : {"attach", "attach_cpu", "attach_faults"}) child->erase(k);
    steps.push_back(*child);
    if (absl::Status st = plugin.Close(*ticket); !st.ok()) return st;
  }
  log.Stop();
  (*out)["first_open_ms_p50"] = Percentile(first_open, 0.5);
  (*out)["first_open_ms_max"] = Percentile(first_open, 1.0);
  (*out)["first_attach_ms_p50"] = Percentile(first_attach, 0.5);
  // CPU time (all the fresh process's threads) and minor faults of its attach.
  (*out)["first_attach_cpu_ms_p50"] = Percentile(first_cpu, 0.5);
  (*out)["first_attach_faults_p50"] = Percentile(first_faults, 0.5);
  (*out)["first_attach_steps_ms"] = StepSummary(steps, log.Steps());
  const std::vector<nlohmann::json> agent = log.PerAttach();
  for (size_t i = 0; i < steps.size() && i < agent.size(); ++i) {
    for (auto& [k, v] : agent[i].items()) steps[i]["agent_" + k.substr(0, k.size() - 3)] = v;
  }
  (*out)["first_attach_samples_ms"] = rpci::bench::TailSamples(first_attach, steps, 0);
  return absl::OkStatus();
}

// The bench's settings, as given on the command line and checked.
struct BenchFlags {
  bool json_only = false, roundtrip_only = false, opens_only = false, attach_once = false,
       spare_fabric = rpci::agent::SessionServerOptions{}.spare_fabric,
       dial_ahead = rpci::client::ClientOptions{}.dial_ahead;
  rpci::fabric::FabricConfig fabric = rpci::fabric::LoopbackConfig();
  rpci::agent::ThrottleOptions throttle;
  int64_t busy_poll_us = 0, scale = 1, doorbells = 950, fresh = 5, opens = 30, flood_client_nice = 0;
  int64_t throttle_nice = throttle.nice, throttle_mib = static_cast<int64_t>(throttle.bytes_per_second >> 20);
};

// Parses the command line; an exit code when the bench must stop there.
std::optional<int> ParseFlags(int argc, char** argv, BenchFlags* f) {
  f->fabric.op_timeout = absl::Seconds(10);
  rpci::FlagSet flags("session_bench [flags]",
                      "Runs an in-process agent session server and client (default tcp;ofi_rxm on 127.0.0.1) and "
                      "prints mirror throughput, doorbell RTT and open latency next to plain loopback TCP.");
  rpci::bench::AddJsonFlag(flags, &f->json_only);
  rpci::fabric::AddFlags(flags, &f->fabric);
  flags.Int("busy_poll_us", &f->busy_poll_us, "how long a waiting caller polls the fabric itself before blocking");
  flags.Int("scale", &f->scale, "divide iteration counts by N (slow fabrics, e.g. Soft-RoCE under emulation)");
  flags.Int("doorbells", &f->doorbells, "doorbells measured solo and again under the flood (before --scale)");
  flags.Int("throttle_nice", &f->throttle_nice,
            "how much nicer a session over its byte budget runs on the agent (0: no throttling)");
  flags.Int("throttle_mib_per_second", &f->throttle_mib, "a session's byte budget before it is throttled, MiB/s");
  flags.Int("flood_client_nice", &f->flood_client_nice,
            "how much nicer the flooding client's thread runs (a bulk workload's setting; 0: as the rest)");
  flags.Bool("roundtrip_only", &f->roundtrip_only, "measure only the device round trip against TCP");
  flags.Int("opens", &f->opens, "sessions opened (reserve + attach) for open_ms (before --scale, at least 3)");
  flags.Bool("opens_only", &f->opens_only, "measure only the opens and the fresh processes' first attaches");
  flags.Bool("spare_fabric", &f->spare_fabric,
             "the agent keeps a session fabric open ahead of the next reservation (SessionServerOptions)");
  flags.Bool("dial_ahead", &f->dial_ahead,
             "the client dials the agent's endpoint the challenge names before its attach RPC (ClientOptions)");
  flags.Int("fresh_attaches", &f->fresh,
            "first attaches measured each in a fresh process (first_open_ms; before --scale, at least 1)");
  flags.Bool("attach_once", &f->attach_once,
             "internal: attach the ticket read from stdin through librpci, print timings");
  return flags.ParseOrExit(argc, argv);
}

// Checks the numeric flags and applies them to the fabric and throttle
// settings; an exit code when they are out of range.
std::optional<int> ApplyFlags(BenchFlags* f) {
  if (f->scale <= 0 || f->doorbells <= 0 || f->busy_poll_us < 0 || f->throttle_nice < 0 || f->throttle_nice > 19 ||
      f->throttle_mib <= 0 || f->flood_client_nice < 0 || f->flood_client_nice > 19) {
    std::cerr << "--scale, --doorbells and --throttle_mib_per_second must be positive, --busy_poll_us not negative, "
                 "--throttle_nice and --flood_client_nice 0..19\n";
    return 2;
  }
  f->throttle.nice = static_cast<int>(f->throttle_nice);
  f->throttle.bytes_per_second = static_cast<uint64_t>(f->throttle_mib) << 20;
  f->fabric.busy_poll = absl::Microseconds(f->busy_poll_us);
  return std::nullopt;
}

constexpr int kIdleSessions = 8;  // for agent_rss_mb_per_session

// The agent under test, in this process: a session server over the bench's
// fabric with a test device for the measured session, one for the flood,
// rpci-emu for the device round trip and kIdleSessions small idle ones.
struct InProcessAgent {
  rpci::MetricsRegistry metrics;
  rpci::agent::GrantTable grants;
  rpci::agent::testing::TestDevice device{4 << 20}, flood_device{4 << 20};
  std::unique_ptr<rpci::agent::EmuBackend> emu;
  std::vector<std::unique_ptr<rpci::agent::testing::TestDevice>> idle;
  std::unique_ptr<rpci::agent::testing::LoopbackSessionServer> server;
};

// Starts `agent` with `f`'s fabric and throttle; 0, or the exit code.
int StartAgent(const BenchFlags& f, InProcessAgent* agent) {
  agent->grants.Upsert({"bench", "dev0", "node", "token", absl::InfiniteFuture()});
  agent->grants.Upsert({"bench-flood", "dev1", "node", "token", absl::InfiniteFuture()});
  agent->grants.Upsert({"bench-emu", "emu0", "node", "token", absl::InfiniteFuture()});
  auto emu = rpci::agent::EmuBackend::Create(rpci::bench::kRoundTripDmaSize);
  if (!emu.ok()) return Fail("emu device", emu.status());
  agent->emu = *std::move(emu);
  std::map<std::string, rpci::agent::SessionDevice*> devices = {
      {"dev0", &agent->device}, {"dev1", &agent->flood_device}, {"emu0", agent->emu.get()}};
  for (int i = 0; i < kIdleSessions; ++i) {
    const std::string id = "idle" + std::to_string(i);
    agent->idle.push_back(std::make_unique<rpci::agent::testing::TestDevice>(4096));
    devices[id] = agent->idle.back().get();
    agent->grants.Upsert({"bench-idle-" + std::to_string(i), id, "node", "token", absl::InfiniteFuture()});
  }
  rpci::agent::SessionServerOptions opts;
  opts.metrics = &agent->metrics;
  opts.fabric = f.fabric;
  opts.throttle = f.throttle;
  opts.spare_fabric = f.spare_fabric;
  auto server = rpci::agent::testing::LoopbackSessionServer::Start(opts, &agent->grants, devices);
  if (!server.ok()) {
    std::fprintf(stderr, "session server: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  agent->server = *std::move(server);
  return 0;
}

// Session open latency: reserve (plugin) + attach (workload); then close.
// The first opens of this process are included (warm-up: the process's
// first endpoint, connection, gRPC channel), but not the provider's
// initialisation, which the agent paid at Start; a workload's first attach
// in a fresh process is first_open_ms (OpenFresh). 0, or the exit code.
int OpenLatency(const std::string& endpoint, const rpci::client::ClientOptions& client_opts, int opens,
                nlohmann::json* out) {
  std::vector<double> open_ms, reserve_ms, open_faults, open_cpu;
  std::vector<nlohmann::json> attach_steps;
  int endpoints_ahead = 0;  // opens that took the endpoint the previous one opened ahead
  int dialled = 0;          // opens whose client dialled the agent's endpoint before the attach RPC
  int anchor_pushed = 0;    // opens that took the anchor record the agent pushed (no RMA read)
  AgentAttachLog agent_log;
  // The plugin's client: one channel to the agent for all its reservations,
  // connected before the first, as the plugin's health loop probes every
  // agent it has devices on (Plugin::CheckHealth -> ControlClient::Probe).
  rpci::client::ControlClient plugin;
  if (absl::Status st = plugin.Probe(endpoint, absl::Seconds(5)); !st.ok()) return Fail("probe", st);
  for (int i = 0; i < opens; ++i) {
    const double faults0 = MinorFaults(), cpu0 = CpuMs();
    auto t0 = Clock::now();
    auto ticket = plugin.Reserve(endpoint, {"bench", "token", "node"});
    if (!ticket.ok()) return Fail("reserve", ticket.status());
    reserve_ms.push_back(Secs(Clock::now() - t0) * 1e3);
    auto c = rpci::client::SessionClient::Attach(*ticket, client_opts);
    if (!c.ok()) {
      std::fprintf(stderr, "open %d: ", i);
      return Fail("attach", c.status());
    }
    open_ms.push_back(Secs(Clock::now() - t0) * 1e3);
    open_faults.push_back(MinorFaults() - faults0);
    open_cpu.push_back(CpuMs() - cpu0);
    attach_steps.push_back(StepsJson((*c)->stats().last_attach));
    endpoints_ahead += (*c)->stats().last_attach.endpoint_ahead ? 1 : 0;
    dialled += (*c)->stats().last_attach.dialled ? 1 : 0;
    anchor_pushed += (*c)->stats().last_attach.anchor_pushed ? 1 : 0;
    (*c)->Close().IgnoreError();  // the workload detaches; the plugin's close ends the session
    if (absl::Status st = plugin.Close(*ticket); !st.ok()) return Fail("close", st);
  }
  (*out)["open_ms_p50"] = Percentile(open_ms, 0.5);
  (*out)["open_ms_p90"] = Percentile(open_ms, 0.9);
  (*out)["open_ms_p99"] = Percentile(open_ms, 0.99);
  (*out)["open_count"] = opens;
  (*out)["open_endpoint_ahead_count"] = endpoints_ahead;
  (*out)["open_dialled_count"] = dialled;
  (*out)["open_anchor_pushed_count"] = anchor_pushed;
  (*out)["open_ms_first3"] = std::vector<double>(open_ms.begin(), open_ms.begin() + 3);
  // Page faults of the whole process (agent and client) during each open:
  // what the first opens pay for memory touched the first time, whatever
  // the load.
  (*out)["open_faults_p50"] = Percentile(open_faults, 0.5);
  (*out)["open_faults_first3"] = std::vector<double>(open_faults.begin(), open_faults.begin() + 3);
  // CPU time of all the process's threads during each open (the agent's
  // and the client's work, whatever else runs on the machine).
  (*out)["open_cpu_ms_p50"] = Percentile(open_cpu, 0.5);
  (*out)["open_cpu_ms_first3"] = std::vector<double>(open_cpu.begin(), open_cpu.begin() + 3);
  (*out)["open_reserve_ms_p50"] = Percentile(reserve_ms, 0.5);
  agent_log.Stop();
  (*out)["open_steps_ms"] = StepSummary(attach_steps, agent_log.Steps());
  // Each slow open (p90 and up) step by step: the client's, the reserve
  // before it and the agent's (inside open_rpc).
  const std::vector<nlohmann::json> agent = agent_log.PerAttach();
  std::vector<nlohmann::json> detail = attach_steps;
  for (size_t i = 0; i < detail.size(); ++i) {
    detail[i]["reserve"] = reserve_ms[i];
    if (i < agent.size()) {
      for (auto& [k, v] : agent[i].items()) detail[i]["agent_" + k.substr(0, k.size() - 3)] = v;
    }
  }
  (*out)["open_slow_ms"] = rpci::bench::TailSamples(open_ms, detail, 0.9);
  return 0;
}

// First attaches each in a fresh process (this binary with --attach_once),
// then the open latency next to a TCP connect. 0, or the exit code.
int OpenFresh(const BenchFlags& f, const std::vector<std::string>& args, const std::string& endpoint,
              nlohmann::json* out) {
  const int scale = static_cast<int>(f.scale);
  const int fresh = f.fresh > 0 ? std::max<int>(1, static_cast<int>(f.fresh) / scale) : 0;
  std::vector<std::string> child_args = args;
  child_args.push_back("--attach_once");
  if (absl::Status st = FreshAttaches(child_args, endpoint, fresh, out); !st.ok()) return Fail("fresh attach", st);
  std::vector<double> connect_us = TcpConnectUs(200);
  (*out)["tcp_connect_us_p50"] = Percentile(connect_us, 0.5);
  (*out)["open_ratio"] = (*out)["open_ms_p50"].get<double>() * 1e3 / (*out)["tcp_connect_us_p50"].get<double>();
  return 0;
}

// DMA mirror throughput per flush size, next to loopback TCP. 0, or the
// exit code.
int Mirror(rpci::client::SessionClient& c, int scale, nlohmann::json* out) {
  nlohmann::json mirror = nlohmann::json::object();
  for (size_t size : {size_t{4096}, size_t{65536}, size_t{1} << 20, size_t{4} << 20}) {
    const size_t total = std::max<size_t>(size * 8, (size_t{128} << 20) / scale);
    const int iters = static_cast<int>(total / size);
    auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) {
      if (absl::Status st = c.FlushDma(0, size); !st.ok()) return Fail("flush dma", st);
    }
    const double gbps = double(size) * iters * 8 / Secs(Clock::now() - t0) / 1e9;
    mirror[std::to_string(size)] = gbps;
    if (size == (size_t{1} << 20)) (*out)["mirror_gbps_1mib"] = gbps;
  }
  (*out)["mirror_gbps_by_size"] = mirror;
  // Raw RMA: FlushDma of 1 MiB to one offset, i.e. libfabric fi_write on
  // loopback, not a device round trip (see device_roundtrip_by_size).
  (*out)["tcp_gbps"] = TcpGbps(size_t{1} << 30);
  (*out)["mirror_ratio"] = (*out)["mirror_gbps_1mib"].get<double>() / (*out)["tcp_gbps"].get<double>();
  (*out)["mirror_ratio_measures"] =
      "raw RMA: FlushDma of 1 MiB to one offset (fi_write on loopback), not a device round trip";
  return 0;
}

// Doorbell -> completion round trip (an empty copy job), alone. 0, or the
// exit code.
int DoorbellsSolo(rpci::client::SessionClient& c, int n, nlohmann::json* out) {
  absl::StatusOr<std::vector<double>> rtt = DoorbellRtts(c, n, 50);
  if (!rtt.ok()) return Fail("doorbell", rtt.status());
  (*out)["doorbell_rtt_us_p50"] = Percentile(*rtt, 0.5);
  (*out)["doorbell_rtt_us_p99"] = Percentile(*rtt, 0.99);
  return 0;
}

// Doorbells in alternating blocks (flood paused, flood running), so load
// from outside the bench weighs on both figures alike. 0, or the exit code.
int DoorbellsInterleaved(rpci::client::SessionClient& c, Flood& flood, int blocks, nlohmann::json* out) {
  std::vector<double> solo_i, flooded_i;
  constexpr int kBlock = 100;
  for (int b = 0; b < std::max(1, blocks / kBlock); ++b) {
    for (auto [samples, running] : {std::pair{&solo_i, false}, {&flooded_i, true}}) {
      if (running) flood.Resume(); else flood.Pause();
      absl::StatusOr<std::vector<double>> block = DoorbellRtts(c, kBlock, 5);
      if (!block.ok()) return Fail("interleaved doorbells", block.status());
      samples->insert(samples->end(), block->begin(), block->end());
    }
  }
  (*out)["doorbell_rtt_us_p99_solo_interleaved"] = Percentile(solo_i, 0.99);
  (*out)["doorbell_rtt_us_p99_flooded_interleaved"] = Percentile(flooded_i, 0.99);
  (*out)["doorbell_p99_flood_ratio_interleaved"] = (*out)["doorbell_rtt_us_p99_flooded_interleaved"].get<double>() /
                                                   (*out)["doorbell_rtt_us_p99_solo_interleaved"].get<double>();
  return 0;
}

// The doorbells again while another session floods the agent (issue 12:
// within 2x), then interleaved with the flood. 0, or the exit code.
int DoorbellsFlooded(const BenchFlags& f, InProcessAgent& agent, const rpci::client::ClientOptions& client_opts,
                     rpci::client::SessionClient& c, nlohmann::json* out) {
  const int n = static_cast<int>(f.doorbells) / static_cast<int>(f.scale);
  auto flood_ticket = rpci::client::ControlClient().Reserve(agent.server->endpoint(), {"bench-flood", "token", "node"});
  if (!flood_ticket.ok()) return Fail("reserve flood", flood_ticket.status());
  auto flooder = rpci::client::SessionClient::Attach(*flood_ticket, client_opts);
  if (!flooder.ok()) return Fail("attach flood", flooder.status());
  const Clock::time_point flood_start = Clock::now();
  Flood flood(flooder->get(), static_cast<int>(f.flood_client_nice));
  // The flood alone first (throttled or not, nothing else wants the CPU).
  absl::SleepFor(absl::Milliseconds(300));
  (*out)["flood_gbps_alone"] = flood.gbps(0, flood_start);
  const uint64_t jobs_alone = flood.jobs();
  const Clock::time_point doorbells_start = Clock::now();
  absl::StatusOr<std::vector<double>> flooded = DoorbellRtts(c, std::max(50, n), 50);
  if (!flooded.ok()) return Fail("doorbell under flood", flooded.status());
  (*out)["doorbell_rtt_us_p50_flooded"] = Percentile(*flooded, 0.5);
  (*out)["doorbell_rtt_us_p99_flooded"] = Percentile(*flooded, 0.99);
  (*out)["flood_jobs"] = flood.jobs();
  (*out)["throttle_nice"] = f.throttle.nice;
  (*out)["flood_client_nice"] = f.flood_client_nice;
  (*out)["flood_throttled"] = ThrottledPushes(agent.metrics);
  (*out)["flood_gbps"] = flood.gbps(jobs_alone, doorbells_start);  // while the doorbells ran
  (*out)["doorbell_p99_flood_ratio"] =
      (*out)["doorbell_rtt_us_p99_flooded"].get<double>() / (*out)["doorbell_rtt_us_p99"].get<double>();
  return DoorbellsInterleaved(c, flood, n, out);
}

// Loopback TCP's ping-pong, next to the doorbell's.
void TcpRtt(nlohmann::json* out) {
  std::vector<double> tcp_rtt = TcpRttUs(2000);
  (*out)["tcp_rtt_us_p50"] = Percentile(tcp_rtt, 0.5);
  (*out)["tcp_rtt_us_p99"] = Percentile(tcp_rtt, 0.99);
  (*out)["doorbell_ratio"] = (*out)["doorbell_rtt_us_p50"].get<double>() / (*out)["tcp_rtt_us_p50"].get<double>();
}

// The doorbell against the fabric's own ping-pong of a doorbell-sized
// message, in alternating blocks (which goes first alternates too), so the
// machine's state weighs on both alike: `doorbell_fabric_ratio` is the p50
// of all doorbell samples over the p50 of all ping-pong samples; each
// block's own ratio of p50s gives the median and spread. 0, or the exit code.
int DoorbellVsFabric(rpci::client::SessionClient& c, const rpci::fabric::FabricConfig& fabric, int blocks,
                     nlohmann::json* out) {
  constexpr int kBlock = 100;
  // Endpoints as a session's (frames only), the message as the doorbell's
  // kick: a frame carrying one register write.
  rpci::fabric::FabricConfig frames = fabric;
  frames.max_message = rpci::session::kMaxFrameBytes;
  auto pp = FabricPingPong::Open(frames, rpci::session::kFrameSize + rpci::session::kMmioEntrySize);
  if (!pp.ok()) return Fail("fabric ping-pong", pp.status());
  Placement placement((*pp)->echo_thread());
  (*out)["doorbell_fabric_placement"] = placement.Describe();
  std::vector<double> doorbell, ping, block_ratio;
  for (int b = 0; b < blocks; ++b) {
    absl::StatusOr<std::vector<double>> d, f;
    for (bool doorbell_turn : {b % 2 == 0, b % 2 != 0}) {
      if (doorbell_turn) {
        if (!(d = DoorbellRtts(c, kBlock, 5)).ok()) return Fail("doorbell", d.status());
      } else if (!(f = (*pp)->Rtts(kBlock, 5)).ok()) {
        return Fail("fabric ping-pong", f.status());
      }
    }
    block_ratio.push_back(Percentile(*d, 0.5) / Percentile(*f, 0.5));
    doorbell.insert(doorbell.end(), d->begin(), d->end());
    ping.insert(ping.end(), f->begin(), f->end());
  }
  (*out)["fabric_rtt_us_p50"] = Percentile(ping, 0.5);
  (*out)["fabric_rtt_us_p99"] = Percentile(ping, 0.99);
  (*out)["doorbell_rtt_us_p50_vs_fabric"] = Percentile(doorbell, 0.5);
  (*out)["doorbell_rtt_us_p99_vs_fabric"] = Percentile(doorbell, 0.99);
  (*out)["doorbell_fabric_ratio"] = Percentile(doorbell, 0.5) / Percentile(ping, 0.5);
  (*out)["doorbell_fabric_blocks"] = blocks;
  (*out)["doorbell_fabric_ratio_block_median"] = Percentile(block_ratio, 0.5);
  (*out)["doorbell_fabric_ratio_block_p10"] = Percentile(block_ratio, 0.1);
  (*out)["doorbell_fabric_ratio_block_p90"] = Percentile(block_ratio, 0.9);
  (*out)["doorbell_fabric_ratio_block_min"] = Percentile(block_ratio, 0);
  (*out)["doorbell_fabric_ratio_block_max"] = Percentile(block_ratio, 1);
  (*out)["fabric_tcp_ratio"] = (*out)["fabric_rtt_us_p50"].get<double>() / (*out)["tcp_rtt_us_p50"].get<double>();
  return 0;
}

// One register write until the agent acknowledges it applied (Write+Sync),
// then the posted write rate (batched through the ring, then synced), each
// next to loopback TCP. 0, or the exit code.
int Mmio(rpci::client::SessionClient& c, int scale, nlohmann::json* out) {
  std::vector<double> mmio_us;
  for (int i = 0; i < 50 + 1000 / scale; ++i) {
    auto t0 = Clock::now();
    if (absl::Status st = c.Write(0, 0x208, 8, i); !st.ok()) return Fail("write", st);
    if (absl::Status st = c.Sync(absl::Seconds(5)); !st.ok()) return Fail("sync", st);
    if (i >= 50) mmio_us.push_back(Secs(Clock::now() - t0) * 1e6);
  }
  (*out)["mmio_write_us_p50"] = Percentile(mmio_us, 0.5);
  (*out)["mmio_write_us_p99"] = Percentile(mmio_us, 0.99);
  (*out)["mmio_write_ratio"] = (*out)["mmio_write_us_p50"].get<double>() / (*out)["tcp_rtt_us_p50"].get<double>();
  auto t0 = Clock::now();
  const int writes = 200000 / scale;
  for (int i = 0; i < writes; ++i) {
    if (absl::Status st = c.Write(0, 0x200, 8, i); !st.ok()) return Fail("write", st);
  }
  if (absl::Status st = c.Sync(absl::Seconds(30)); !st.ok()) return Fail("sync", st);
  (*out)["mmio_writes_per_sec"] = writes / Secs(Clock::now() - t0);
  // The same count of 32-byte records streamed over loopback TCP.
  (*out)["tcp_records_per_sec"] = TcpGbps(static_cast<size_t>(writes) * 32) * 1e9 / 8 / 32;
  (*out)["mmio_rate_ratio"] =
      (*out)["mmio_writes_per_sec"].get<double>() / (*out)["tcp_records_per_sec"].get<double>();
  return 0;
}

// The figures measured over one attached session, in order. 0, or the
// exit code.
int SessionFigures(const BenchFlags& f, InProcessAgent& agent, const rpci::client::ClientOptions& client_opts,
                   nlohmann::json* out) {
  const std::string endpoint = agent.server->endpoint();
  const int scale = static_cast<int>(f.scale);
  auto ticket = rpci::client::ControlClient().Reserve(endpoint, {"bench", "token", "node"});
  if (!ticket.ok()) return Fail("reserve", ticket.status());
  auto client = rpci::client::SessionClient::Attach(*ticket, client_opts);
  if (!client.ok()) return Fail("attach", client.status());
  rpci::client::SessionClient& c = **client;
  if (int rc = Mirror(c, scale, out)) return rc;
  if (int rc = DoorbellsSolo(c, std::max(50, static_cast<int>(f.doorbells) / scale), out)) return rc;
  if (int rc = DoorbellsFlooded(f, agent, client_opts, c, out)) return rc;
  TcpRtt(out);
  if (int rc = DoorbellVsFabric(c, f.fabric, std::max(10, static_cast<int>(f.doorbells) / scale / 100), out)) return rc;
  // Its own session and fabrics: a failure there (e.g. memory a slow
  // provider cannot register) is reported, the other figures kept.
  if (absl::Status st = RoundTrips(endpoint, client_opts, scale, out); !st.ok()) {
    (*out)["device_roundtrip_error"] = st.ToString();
  }
  if (int rc = Mmio(c, scale, out)) return rc;
  c.Close().IgnoreError();
  return 0;
}

// The figures as one JSON line, then (unless --json) as a table.
void Print(const nlohmann::json& out, bool json_only) {
  std::printf("%s\n", out.dump().c_str());
  if (json_only) return;
  std::printf("\n%-34s %14s\n", "metric", "value");
  for (auto& [k, v] : out.items()) {
    if (v.is_number()) std::printf("%-34s %12.3f\n", k.c_str(), v.get<double>());
  }
  for (auto& [k, v] : out.at("mirror_gbps_by_size").items()) {
    std::printf("mirror_gbps @ %-20s %12.3f\n", k.c_str(), v.get<double>());
  }
}

}  // namespace

int main(int argc, char** argv) {
  BenchFlags f;
  if (std::optional<int> exit_code = ParseFlags(argc, argv, &f)) return *exit_code;
  if (f.attach_once) return AttachOnce(f.fabric);
  if (std::optional<int> exit_code = ApplyFlags(&f)) return *exit_code;
  const int scale = static_cast<int>(f.scale);
  rpci::Logger::SetMinLevel(rpci::LogLevel::kError);
  InProcessAgent agent;
  if (int rc = StartAgent(f, &agent)) return rc;
  const std::string endpoint = agent.server->endpoint();
  rpci::client::ClientOptions client_opts;
  client_opts.fabric = f.fabric;
  client_opts.dial_ahead = f.dial_ahead;
  nlohmann::json out;
  if (f.roundtrip_only) {
    if (absl::Status st = RoundTrips(endpoint, client_opts, scale, &out); !st.ok()) return Fail("device round trip", st);
    agent.server.reset();
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  if (int rc = OpenLatency(endpoint, client_opts, std::max<int>(3, static_cast<int>(f.opens) / scale), &out)) return rc;
  if (int rc = OpenFresh(f, std::vector<std::string>(argv, argv + argc), endpoint, &out)) return rc;
  if (f.opens_only) {
    agent.server.reset();
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  if (absl::Status st = SessionMemory(agent.server->server(), endpoint, kIdleSessions, &out); !st.ok()) {
    return Fail("session memory", st);
  }
  if (int rc = SessionFigures(f, agent, client_opts, &out)) return rc;
  out["provider"] = f.fabric.provider;
  out["node"] = f.fabric.node;
  out["scale"] = scale;
  agent.server.reset();
  Print(out, f.json_only);
  return 0;
}
