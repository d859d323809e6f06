// Agent inventory and fabric benchmark (not a test):
//   - scan_ms: median time of ScanPciFunctions over the live /sys with one
//     PciNames kept open (names resolved, as `rpci-agent inventory` does);
//   - rma_write_gbps: one-sided RMA writes over tcp;ofi_rxm on loopback
//     between two endpoints (each on its own fabric/domain), registered
//     regions, WriteBatch of `--batch` writes of `--size` bytes each;
//   - tcp_gbps: plain loopback TCP streaming measured in the same run;
//   - rma_ratio = rma_write_gbps / tcp_gbps.
//   bazel run //bench:fabric -- [--json] [--size=BYTES] [--total_mb=N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/inventory/pci_inventory.h"
#include "agent/inventory/pci_names.h"
#include "bench/fabric_pair.h"
#include "bench/stats.h"
#include "bench/tcp_baseline.h"
#include "common/fabric/fabric.h"
#include "common/fabric/fabric_flags.h"
#include "common/flags.h"
#include "common/log.h"
#include "nlohmann/json.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace fabric = rpci::fabric;

double Secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct ScanResult {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  size_t functions = 0;
};

absl::StatusOr<ScanResult> MeasureScan(const std::string& sysfs_root, int scans) {
  absl::StatusOr<std::unique_ptr<rpci::agent::PciNames>> names = rpci::agent::PciNames::Open();
  if (!names.ok()) return names.status();
  // One scan first: pci.ids is loaded lazily, as in a long-running agent.
  auto warm = rpci::agent::ScanPciFunctions(sysfs_root, names->get());
  if (!warm.ok()) return warm.status();
  std::vector<double> ms;
  ScanResult r;
  for (int i = 0; i < scans; ++i) {
    auto t0 = Clock::now();
    auto fns = rpci::agent::ScanPciFunctions(sysfs_root, names->get());
    ms.push_back(Secs(Clock::now() - t0) * 1e3);
    if (!fns.ok()) return fns.status();
    r.functions = fns->size();
  }
  r.median_ms = rpci::bench::Percentile(ms, 0.5);
  r.min_ms = *std::min_element(ms.begin(), ms.end());
  r.max_ms = *std::max_element(ms.begin(), ms.end());
  return r;
}

struct RmaResult {
  double gbps = 0;
  int64_t bytes = 0;
  double secs = 0;
  std::string provider;
};

// Two endpoints on separate fabrics (as agent and client are), a source
// region on one and a remote-writable target on the other.
absl::StatusOr<RmaResult> MeasureRmaWrite(fabric::FabricConfig config, size_t size, int batch, int64_t total) {
  config.op_timeout = absl::Seconds(30);
  absl::StatusOr<rpci::bench::FabricPair> pair = rpci::bench::OpenFabricPair(config);
  if (!pair.ok()) return pair.status();
  auto* a = &pair->a;
  auto* b = &pair->b;
  auto* peer = &pair->a_to_b;

  const size_t span = size * static_cast<size_t>(batch);
  std::vector<uint8_t> src(span, 0x5a), dst(span, 0);
  auto src_mr = (*a)->RegisterMemory(src.data(), src.size(), fabric::kLocalOnly);
  if (!src_mr.ok()) return src_mr.status();
  auto dst_mr = (*b)->RegisterMemory(dst.data(), dst.size(), fabric::kRemoteWrite);
  if (!dst_mr.ok()) return dst_mr.status();
  const fabric::RemoteRegion remote = (*dst_mr)->remote();
  std::vector<fabric::RmaOp> ops;
  for (int i = 0; i < batch; ++i) {
    ops.push_back({src_mr->get(), i * size, size, remote.address + i * size, remote.key});
  }
  // Warm-up: connection setup and first-touch of both buffers.
  for (int i = 0; i < 4; ++i) {
    if (absl::Status s = (*a)->WriteBatch(*peer, ops); !s.ok()) return s;
  }
  if (dst != src) return absl::InternalError("rma write: target buffer differs from the source after writes");
  const int64_t rounds = std::max<int64_t>(8, total / static_cast<int64_t>(span));
  auto t0 = Clock::now();
  for (int64_t i = 0; i < rounds; ++i) {
    if (absl::Status s = (*a)->WriteBatch(*peer, ops); !s.ok()) return s;
  }
  RmaResult r;
  r.secs = Secs(Clock::now() - t0);
  r.bytes = rounds * static_cast<int64_t>(span);
  r.gbps = r.bytes * 8 / r.secs / 1e9;
  r.provider = (*a)->provider();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bool json_only = false;
  std::string sysfs_root = "/sys";
  int64_t scans = 21, size = 1 << 20, batch = 8, total_mb = 2048, tcp_mb = 2048;
  rpci::FlagSet flags("bench/fabric [flags]",
                      "Inventory scan time of the live sysfs, and one-sided RMA write bandwidth (default tcp;ofi_rxm "
                      "on loopback) next to plain loopback TCP measured in the same run.");
  rpci::bench::AddJsonFlag(flags, &json_only);
  flags.String("sysfs_root", &sysfs_root, "sysfs to scan");
  flags.Int("scans", &scans, "timed inventory scans (the median is reported)");
  flags.Int("size", &size, "bytes per RMA write");
  flags.Int("batch", &batch, "writes per WriteBatch (posted together, then waited for)");
  flags.Int("total_mb", &total_mb, "MiB written by RMA in the timed part");
  flags.Int("tcp_mb", &tcp_mb, "MiB streamed over loopback TCP");
  rpci::fabric::FabricConfig config = rpci::fabric::LoopbackConfig();
  rpci::fabric::AddFlags(flags, &config);
  flags.Require([&] { return scans > 0 && size > 0 && batch > 0 && total_mb > 0 && tcp_mb > 0; },
                "--scans, --size, --batch, --total_mb and --tcp_mb must be positive");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  rpci::Logger::SetMinLevel(rpci::LogLevel::kError);

  absl::StatusOr<ScanResult> scan = MeasureScan(sysfs_root, static_cast<int>(scans));
  if (!scan.ok()) {
    std::cerr << "inventory scan of " << sysfs_root << ": " << scan.status() << "\n";
    return 1;
  }
  absl::StatusOr<RmaResult> rma =
      MeasureRmaWrite(config, static_cast<size_t>(size), static_cast<int>(batch), total_mb << 20);
  if (!rma.ok()) {
    std::cerr << "rma write: " << rma.status() << "\n";
    return 1;
  }
  const double tcp_gbps = rpci::bench::TcpGbps(static_cast<size_t>(tcp_mb) << 20);
  json out = {{"benchmark", "fabric"},
              {"scan_ms", scan->median_ms},
              {"scan_ms_min", scan->min_ms},
              {"scan_ms_max", scan->max_ms},
              {"scans", scans},
              {"pci_functions", scan->functions},
              {"provider", rma->provider},
              {"rma_write_size", size},
              {"rma_write_batch", batch},
              {"rma_write_bytes", rma->bytes},
              {"rma_write_gbps", rma->gbps},
              {"tcp_gbps", tcp_gbps},
              {"rma_ratio", tcp_gbps > 0 ? rma->gbps / tcp_gbps : 0.0}};
  rpci::bench::PrintResult(out, json_only, [&](const json& r) {
    printf("\n%-40s %12s\n", "metric", "value");
    printf("%-40s %12.3f  (median of %lld, min %.3f, max %.3f; target <= 5)\n", "inventory scan, live /sys (ms)",
           scan->median_ms, static_cast<long long>(scans), scan->min_ms, scan->max_ms);
    printf("%-40s %12zu\n", "PCI functions scanned", scan->functions);
    printf("%-40s %12.2f  (%s, %lld x %lld B per batch)\n", "RMA write (Gbit/s)", rma->gbps, rma->provider.c_str(),
           static_cast<long long>(batch), static_cast<long long>(size));
    printf("%-40s %12.2f\n", "loopback TCP stream (Gbit/s)", tcp_gbps);
    printf("%-40s %12.3f\n", "rma_ratio (RMA / TCP)", r["rma_ratio"].get<double>());
  });
  return 0;
}
