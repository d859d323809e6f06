#ifndef RPCI_BENCH_STATS_H_
#define RPCI_BENCH_STATS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flags.h"
#include "nlohmann/json.hpp"

namespace rpci::bench {

// --json, every benchmark's output flag: print only the JSON object (no
// table after it).
void AddJsonFlag(FlagSet& flags, bool* json_only);

// Every benchmark's output: `result` as one JSON line on stdout (what
// bench/run.sh records), then, unless --json, `table` prints it for people.
void PrintResult(const nlohmann::json& result, bool json_only,
                 const std::function<void(const nlohmann::json&)>& table);

// The p-quantile (0..1) of `v`; 0 when empty.
double Percentile(std::vector<double> v, double p);

// The tail of a run: the samples at or above the q-quantile (0..1) of
// `totals`, slowest first, each as its `detail` (same index) with "ms" (its
// total) and "index" (its place in the run) added. Where a slow sample's time
// went, not only each step's p50 and max.
nlohmann::json TailSamples(const std::vector<double>& totals, const std::vector<nlohmann::json>& detail, double q);

// This process's resident set (VmRSS) and its peak (VmHWM) in MiB; 0 when
// /proc/self/status cannot be read.
double RssMb();
double PeakRssMb();
// Its anonymous resident memory (RssAnon) in MiB, and its thread count.
double RssAnonMb();
int Threads();

// Runs `fn` in a forked child (its own RSS, nothing shared but the pages of
// the fork) and returns its JSON; on failure, or still running after
// `max_seconds` (then killed), `incomplete` with an "error" member.
nlohmann::json RunInChild(const std::function<absl::StatusOr<nlohmann::json>()>& fn, nlohmann::json incomplete,
                          int64_t max_seconds);

}  // namespace rpci::bench

#endif  // RPCI_BENCH_STATS_H_
