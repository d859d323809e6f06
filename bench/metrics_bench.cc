// The metrics hot path on prometheus-cpp: what one counter increment costs on
// a resolved series (the session's frame and write counters), with one and two
// threads on the same counter; a by-label lookup (refusals); and rendering
// /metrics with many series.
//   bazel run -c opt //bench:metrics -- [--json] [--increments=N] [--series=N]
#include <chrono>
#include <functional>
#include <cstdio>
#include <iostream>
#include <thread>
#include <vector>

#include "bench/stats.h"
#include "common/flags.h"
#include "common/metrics.h"
#include "nlohmann/json.hpp"

namespace {

double NsPer(int64_t n, const std::function<void()>& run) {
  auto start = std::chrono::steady_clock::now();
  run();
  std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
  return took.count() / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
  bool json_only = false;
  int64_t increments = 20000000, series = 1000;
  rpci::FlagSet flags("bench/metrics [flags]",
                      "Counter increments (resolved series, 1 and 2 threads; by-label lookup) and /metrics rendering.");
  rpci::bench::AddJsonFlag(flags, &json_only);
  flags.Int("increments", &increments, "increments per measurement");
  flags.Int("series", &series, "series in the rendered registry");
  flags.Require([&] { return increments > 0 && series > 0; }, "--increments and --series must be positive");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  rpci::MetricsRegistry registry;
  rpci::Counter& writes = registry.AddCounter("bench_writes_total", "w").Get();
  const double one_thread = NsPer(increments, [&] {
    for (int64_t i = 0; i < increments; ++i) writes.Increment();
  });
  const double two_threads = NsPer(increments, [&] {
    auto half = [&] {
      for (int64_t i = 0; i < increments / 2; ++i) writes.Increment();
    };
    std::thread other(half);
    half();
    other.join();
  });
  rpci::CounterFamily& refused = registry.AddCounter("bench_refused_total", "r", {"reason"});
  const int64_t lookups = increments / 10;
  const double by_label = NsPer(lookups, [&] {
    for (int64_t i = 0; i < lookups; ++i) refused.Labels({"bad_key"}).Increment();
  });
  rpci::GaugeFamily& devices = registry.AddGauge("bench_devices", "d", {"pool", "phase"});
  for (int64_t i = 0; i < series; ++i) devices.Labels({"pool" + std::to_string(i % 50), std::to_string(i)}).Set(i);
  size_t bytes = 0;
  const double render_us = NsPer(20, [&] {
                             for (int i = 0; i < 20; ++i) bytes = registry.Render().size();
                           }) / 1000;
  nlohmann::json out = {{"benchmark", "metrics"},
                        {"increment_ns", one_thread},
                        {"increment_ns_2_threads", two_threads},
                        {"labels_lookup_increment_ns", by_label},
                        {"render_us", render_us},
                        {"render_series", series + 3},
                        {"render_bytes", bytes}};
  rpci::bench::PrintResult(out, json_only, [&](const nlohmann::json&) {
    printf("\n%-44s %12s\n", "metric", "value");
    printf("%-44s %12.2f\n", "counter increment, resolved series (ns)", one_thread);
    printf("%-44s %12.2f\n", "  the same, 2 threads on one counter (ns)", two_threads);
    printf("%-44s %12.2f\n", "Labels({...}).Increment() (ns)", by_label);
    printf("%-44s %12.1f  (%lld series, %zu bytes)\n", "Render() (us)", render_us,
           static_cast<long long>(series + 3), bytes);
  });
  return 0;
}
