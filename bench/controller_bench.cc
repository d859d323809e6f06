// Controller benchmark (not a test): the pool manager on its local store.
// For each size it registers device servers (50 devices each) and compute
// nodes (one per 10 devices, 10 spares each), then measures
//   - assignments/s: one Reconcile() pass that assigns every device, including
//     the crash-safe local-store commit;
//   - Claim latency: Claim() calls one after another, each committed (fsync)
//     before it returns, as a plugin's Allocate waits for it;
// and the process RSS afterwards. Prints one JSON object, then a table
// (--json: only the JSON).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
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

double RssMb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kb = 0;
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kb)) return kb / 1024.0;
    }
  }
  return 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

absl::StatusOr<json> RunSize(int devices, int claims, const std::string& base_dir) {
  char dir_template[4096];
  snprintf(dir_template, sizeof(dir_template), "%s/rpci-controller-bench-XXXXXX", base_dir.c_str());
  if (mkdtemp(dir_template) == nullptr) return absl::InternalError(absl::StrCat("mkdtemp under ", base_dir));
  const std::string dir = dir_template;
  auto store = LocalStore::Open(dir, rpci::Clock::Real());
  if (!store.ok()) return store.status();
  PoolManager::Options options;
  PoolManager manager(store->get(), rpci::Clock::Real(), options);
  PoolSpec pool;
  pool.name = "emu";
  pool.spares_per_node = kDevicesPerNode;
  manager.SetPools({pool});

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
  const int nodes = std::max(1, devices / kDevicesPerNode);
  for (int n = 0; n < nodes; ++n) {
    rpci::v1::RegisterNodeRequest req;
    req.set_node(absl::StrCat("cn-", n));
    req.add_pools("emu");
    if (auto r = manager.RegisterNode(req); !r.ok()) return r.status();
  }

  const absl::Time start = absl::Now();
  std::vector<rpci::controller::Decision> decisions = manager.Reconcile();
  const absl::Duration took = absl::Now() - start;
  int assigned = 0;
  for (const auto& d : decisions) assigned += d.action == "assign";

  std::vector<std::pair<std::string, std::string>> targets;  // device, node
  for (const auto& d : manager.Devices()) {
    if (!d.assigned_node.empty()) targets.emplace_back(d.id(), d.assigned_node);
  }
  claims = std::min<int>(claims, targets.size());
  std::vector<double> latencies_us;
  for (int i = 0; i < claims; ++i) {
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
  if (absl::Status s = manager.CheckInvariants(); !s.ok()) return s;
  double mean = 0;
  for (double l : latencies_us) mean += l;
  if (!latencies_us.empty()) mean /= latencies_us.size();
  json out = {{"devices", devices},
              {"compute_nodes", nodes},
              {"assigned", assigned},
              {"reconcile_ms", absl::ToDoubleMilliseconds(took)},
              {"assignments_per_s", assigned / std::max(1e-9, absl::ToDoubleSeconds(took))},
              {"claims", claims},
              {"claim_us_mean", mean},
              {"claim_us_p50", Percentile(latencies_us, 0.50)},
              {"claim_us_p99", Percentile(latencies_us, 0.99)},
              {"rss_mb", RssMb()}};
  std::string cleanup = absl::StrCat("rm -rf '", dir, "'");
  (void)std::system(cleanup.c_str());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bool json_only = false;
  std::string sizes_text = "100,1000,5000", dir = "/tmp";
  int64_t claims = 200;
  rpci::FlagSet flags("bench/controller [flags]",
                      "Pool manager on the local store: assignments/s of one reconcile pass and Claim latency "
                      "(each Claim committed with fsync), by number of devices.");
  flags.Bool("json", &json_only, "print only the JSON object");
  flags.String("devices", &sizes_text, "comma-separated device counts");
  flags.Int("claims", &claims, "Claim calls timed per size");
  flags.String("dir", &dir, "where the local store's state directories go (the disk under test)");
  absl::StatusOr<std::vector<std::string>> args = flags.Parse(argc, argv);
  if (!args.ok()) {
    std::cerr << args.status().message() << "\n" << flags.Help();
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Help();
    return 0;
  }
  flags.Apply();
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
  json result = {{"benchmark", "controller"}, {"store", "local"}, {"results", json::array()}};
  for (int n : sizes) {
    absl::StatusOr<json> r = RunSize(n, static_cast<int>(claims), dir);
    if (!r.ok()) {
      std::cerr << "devices=" << n << ": " << r.status() << "\n";
      return 1;
    }
    result["results"].push_back(*r);
  }
  std::cout << result.dump() << "\n";
  if (json_only) return 0;
  printf("\n%8s %6s %12s %14s %13s %13s %13s %8s\n", "devices", "nodes", "reconcile_ms", "assignments/s",
         "claim_p50_us", "claim_p99_us", "claim_mean_us", "rss_mb");
  for (const json& r : result["results"]) {
    printf("%8d %6d %12.1f %14.0f %13.0f %13.0f %13.0f %8.1f\n", r["devices"].get<int>(),
           r["compute_nodes"].get<int>(), r["reconcile_ms"].get<double>(), r["assignments_per_s"].get<double>(),
           r["claim_us_p50"].get<double>(), r["claim_us_p99"].get<double>(), r["claim_us_mean"].get<double>(),
           r["rss_mb"].get<double>());
  }
  return 0;
}
