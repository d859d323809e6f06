// Controller benchmark (not a test): the pool manager on its local store.
// For each size it registers device servers (50 devices each) and compute
// nodes (one per 10 devices, 10 spares each), then measures
//   - assignments/s: one Reconcile() pass that assigns every device, including
//     the crash-safe local-store commit;
//   - Claim latency: Claim() calls one after another, each committed (fsync)
//     before it returns, as a plugin's Allocate waits for it;
// and the RSS afterwards; then a restart: another fresh child opens the state
// directory the size left and loads it (restart_load_s, restart_rss_mb,
// restart_peak_rss_mb). Each runs in a forked child of its own, so its RSS
// is its own; a size that takes longer than --max_seconds is killed and
// reported as not completed. The headline `assignments_per_s` and `rss_mb`
// are the --headline size's (10 000 devices x 1 000 compute nodes); `scaling`
// lists every size. Prints one JSON object, then a table (--json: only the
// JSON).
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/stats.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "controller/local_store.h"
#include "controller/pool_manager.h"
#include "nlohmann/json.hpp"

namespace {

using nlohmann::json;
using rpci::controller::LocalStore;
using rpci::controller::PoolManager;
using rpci::controller::PoolSpec;

constexpr int kDevicesPerServer = 50;
constexpr int kDevicesPerNode = 10;

using rpci::bench::Percentile;
using rpci::bench::PeakRssMb;
using rpci::bench::RssMb;

double ThreadCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Bytes malloc has handed out and not had back, in MiB: rss_mb minus this is
// what the allocator holds free (fragmentation) plus code and stacks.
double HeapInUseMb() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd) / (1 << 20);
}

// Device servers of kDevicesPerServer devices each register `devices` in
// all, then `nodes` compute nodes serving the pool.
absl::Status RegisterFleet(PoolManager& manager, int devices, int nodes) {
  for (int s = 0; s * kDevicesPerServer < devices; ++s) {
    rpci::v1::RegisterAgentRequest req;
    const std::string server = absl::StrCat("dev-", s);
    req.set_node(server);
    req.set_session_endpoint(server + ":7443");
    for (int i = 0; i < kDevicesPerServer && s * kDevicesPerServer + i < devices; ++i) {
      rpci::v1::ExportedDevice* d = req.add_devices();
      d->set_id(absl::StrCat(server, "-", i));
      d->set_node(server);
      d->set_pool("emu");
      d->set_backend("emu");
      d->set_health(rpci::v1::DEVICE_HEALTH_HEALTHY);
    }
    if (auto r = manager.RegisterAgent(req); !r.ok()) return r.status();
  }
  for (int n = 0; n < nodes; ++n) {
    rpci::v1::RegisterNodeRequest req;
    req.set_node(absl::StrCat("cn-", n));
    req.add_pools("emu");
    if (auto r = manager.RegisterNode(req); !r.ok()) return r.status();
  }
  return absl::OkStatus();
}

// The Claim targets of one reconcile pass (at most `claims`): as
// ControllerApp::Step, the pass's decisions taken (posted as Events there);
// their first assignments. Neither a copy of every device nor the decisions
// stay to be counted in rss_mb.
std::vector<std::pair<std::string, std::string>> ClaimTargets(PoolManager& manager, int claims) {
  std::vector<std::pair<std::string, std::string>> targets;  // device, node
  for (const rpci::controller::Decision& d : manager.TakeDecisions()) {
    if (d.action == "assign" && static_cast<int>(targets.size()) < claims) targets.emplace_back(d.device_id, d.node);
  }
  return targets;
}

// Claims each of `targets` (each committed with fsync): the latencies, us.
absl::StatusOr<std::vector<double>> TimeClaims(PoolManager& manager,
                                               const std::vector<std::pair<std::string, std::string>>& targets) {
  std::vector<double> latencies_us;
  for (int i = 0; i < static_cast<int>(targets.size()); ++i) {
    rpci::v1::ClaimRequest req;
    req.set_device_id(targets[i].first);
    req.set_node(targets[i].second);
    req.set_pod_namespace("bench");
    req.set_pod_name(absl::StrCat("pod-", i));
    const absl::Time t0 = absl::Now();
    auto r = manager.Claim(req);
    latencies_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
    if (!r.ok()) return r.status();
  }
  return latencies_us;
}

// What one watch stream's refresh costs (each WatchAssignments and
// WatchGrants stream recomputes its set when the state changes):
// watch_refresh_us and watch_refresh_items into `out`.
void TimeWatchRefresh(PoolManager& manager, json* out) {
  const absl::Time watch_start = absl::Now();
  constexpr int kWatchCalls = 20;
  size_t watched = 0;
  for (int i = 0; i < kWatchCalls; ++i) {
    watched += manager.AssignmentsFor("cn-0").assignments_size() + manager.GrantsFor("dev-0").size();
  }
  // AssignmentsFor + GrantsFor, one node each
  (*out)["watch_refresh_us"] = absl::ToDoubleMicroseconds(absl::Now() - watch_start) / kWatchCalls;
  (*out)["watch_refresh_items"] = watched / kWatchCalls;
}

absl::StatusOr<json> RunSize(int devices, int claims, const std::string& base_dir) {
  char dir_template[4096];
  snprintf(dir_template, sizeof(dir_template), "%s/rpci-controller-bench-XXXXXX", base_dir.c_str());
  if (mkdtemp(dir_template) == nullptr) return absl::InternalError(absl::StrCat("mkdtemp under ", base_dir));
  const std::string dir = dir_template;
  auto store = LocalStore::Open(dir, rpci::Clock::Real());
  if (!store.ok()) return store.status();
  PoolManager::Options options;
  // Registering 100k devices takes longer than the default 30 s leases, and
  // nothing heartbeats here: without this the first agents and nodes would
  // expire before the timed pass (measuring reclaim, not assignment).
  options.agent_lease = absl::Hours(1);
  options.node_lease = absl::Hours(1);
  PoolManager manager(store->get(), rpci::Clock::Real(), options);
  PoolSpec pool;
  pool.name = "emu";
  pool.spares_per_node = kDevicesPerNode;
  manager.SetPools({pool});

  const absl::Time setup_start = absl::Now();
  const int nodes = std::max(1, devices / kDevicesPerNode);
  if (absl::Status s = RegisterFleet(manager, devices, nodes); !s.ok()) return s;
  const double setup_s = absl::ToDoubleSeconds(absl::Now() - setup_start);
  const absl::Time start = absl::Now();
  const double cpu_start = ThreadCpuMs();
  manager.Reconcile();
  const absl::Duration took = absl::Now() - start;
  const double cpu_ms = ThreadCpuMs() - cpu_start;
  // The count comes from the state (the kept window holds at most the last
  // 100 000 decisions).
  const std::vector<std::pair<std::string, std::string>> targets = ClaimTargets(manager, claims);
  const std::map<std::string, int64_t> phases = manager.PhaseCounts()[pool.name];
  const int assigned = phases.count("Assigned") ? static_cast<int>(phases.at("Assigned")) : 0;
  absl::StatusOr<std::vector<double>> latencies_us = TimeClaims(manager, targets);
  if (!latencies_us.ok()) return latencies_us.status();
  if (absl::Status s = manager.CheckInvariants(); !s.ok()) return s;
  json out;
  TimeWatchRefresh(manager, &out);
  double mean = 0;
  for (double l : *latencies_us) mean += l;
  if (!latencies_us->empty()) mean /= latencies_us->size();
  out.update({{"devices", devices},
              {"compute_nodes", nodes},
              {"assigned", assigned},
              {"completed", true},
              {"setup_s", setup_s},
              {"reconcile_ms", absl::ToDoubleMilliseconds(took)},
              {"reconcile_cpu_ms", cpu_ms},
              {"assignments_per_s", assigned / std::max(1e-9, absl::ToDoubleSeconds(took))},
              {"assignments_per_cpu_s", assigned / std::max(1e-6, cpu_ms / 1e3)},
              {"claims", static_cast<int>(targets.size())},
              {"claim_us_mean", mean},
              {"claim_us_p50", Percentile(*latencies_us, 0.50)},
              {"claim_us_p99", Percentile(*latencies_us, 0.99)},
              {"rss_mb", RssMb()},
              {"peak_rss_mb", PeakRssMb()},
              {"heap_in_use_mb", HeapInUseMb()},
              {"state_dir", dir}});
  return out;
}

// A restarted controller: a fresh process opens the state directory a size
// left behind and loads it, as a new leader does first.
absl::StatusOr<json> RestartFrom(const std::string& dir) {
  const absl::Time start = absl::Now();
  auto store = LocalStore::Open(dir, rpci::Clock::Real());
  if (!store.ok()) return store.status();
  PoolManager manager(store->get(), rpci::Clock::Real(), PoolManager::Options());
  if (absl::Status s = manager.Load(); !s.ok()) return s;
  const double load_s = absl::ToDoubleSeconds(absl::Now() - start);
  int64_t loaded = 0;
  for (const auto& [pool, phases] : manager.PhaseCounts()) {
    for (const auto& [phase, n] : phases) loaded += n;
  }
  return json{{"restart_devices", loaded},
              {"restart_load_s", load_s},
              {"restart_rss_mb", RssMb()},
              {"restart_peak_rss_mb", PeakRssMb()}};
}

// The figures of every size, one row each.
void PrintTable(const json& result) {
  printf("\n%8s %6s %12s %10s %14s %13s %13s %13s %8s %11s\n", "devices", "nodes", "reconcile_ms", "cpu_ms",
         "assignments/s", "claim_p50_us", "claim_p99_us", "claim_mean_us", "rss_mb", "restart_mb");
  for (const json& r : result["scaling"]) {
    if (!r.value("completed", false)) {
      printf("%8d  not completed: %s\n", r["devices"].get<int>(), r.value("error", "failed").c_str());
      continue;
    }
    printf("%8d %6d %12.1f %10.1f %14.0f %13.0f %13.0f %13.0f %8.1f %11.1f\n", r["devices"].get<int>(),
           r["compute_nodes"].get<int>(), r["reconcile_ms"].get<double>(), r["reconcile_cpu_ms"].get<double>(),
           r["assignments_per_s"].get<double>(),
           r["claim_us_p50"].get<double>(), r["claim_us_p99"].get<double>(), r["claim_us_mean"].get<double>(),
           r["rss_mb"].get<double>(), r.value("restart_rss_mb", 0.0));
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool json_only = false;
  std::string sizes_text = "1000,10000,100000", dir = "/tmp";
  int64_t claims = 200, headline = 10000, max_seconds = 150;
  bool in_process = false;
  rpci::FlagSet flags("bench/controller [flags]",
                      "Pool manager on the local store: assignments/s of one reconcile pass and Claim latency "
                      "(each Claim committed with fsync), by number of devices.");
  rpci::bench::AddJsonFlag(flags, &json_only);
  flags.String("devices", &sizes_text, "comma-separated device counts");
  flags.Int("claims", &claims, "Claim calls timed per size");
  flags.Int("headline", &headline, "device count whose figures are the top-level assignments_per_s and rss_mb");
  flags.Int("max_seconds", &max_seconds, "a size still running after this long is killed and reported incomplete");
  flags.String("dir", &dir, "where the local store's state directories go (the disk under test)");
  flags.Bool("in_process", &in_process,
             "run each size in this process instead of a forked child (for heap profilers such as heaptrack; "
             "rss_mb then includes the sizes before it)");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  std::vector<int> sizes;
  for (absl::string_view s : absl::StrSplit(sizes_text, ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(s, &n) || n <= 0) {
      std::cerr << "--devices: \"" << s << "\" is not a positive count\n";
      return 2;
    }
    sizes.push_back(n);
  }
  rpci::Logger::SetMinLevel(rpci::LogLevel::kError);
  json result = {{"benchmark", "controller"}, {"store", "local"}, {"scaling", json::array()}};
  for (int n : sizes) {
    json r = json{{"devices", n}, {"completed", false}};
    if (in_process) {
      absl::StatusOr<json> run = RunSize(n, static_cast<int>(claims), dir);
      if (run.ok()) r = *std::move(run);
      else r["error"] = run.status().ToString();
    } else {
      r = rpci::bench::RunInChild([&] { return RunSize(n, static_cast<int>(claims), dir); }, r, max_seconds);
    }
    if (r.contains("state_dir")) {
      const std::string state_dir = r["state_dir"].get<std::string>();
      r.erase("state_dir");
      json restart = json{{"restart_completed", false}};
      if (in_process) {
        absl::StatusOr<json> run = RestartFrom(state_dir);
        if (run.ok()) restart = *std::move(run);
      } else {
        restart = rpci::bench::RunInChild([&] { return RestartFrom(state_dir); }, restart, max_seconds);
      }
      r.update(restart);
      std::error_code ignored;  // best effort: the directory is under --dir's temp area
      std::filesystem::remove_all(state_dir, ignored);
    }
    if (!r.value("completed", false)) std::cerr << "devices=" << n << ": " << r.value("error", "failed") << "\n";
    result["scaling"].push_back(r);
    if (n == headline && r.value("completed", false)) {
      result["devices"] = n;
      result["compute_nodes"] = r["compute_nodes"];
      result["assignments_per_s"] = r["assignments_per_s"];
      result["rss_mb"] = r["rss_mb"];
    }
  }
  rpci::bench::PrintResult(result, json_only, PrintTable);
  return 0;
}
