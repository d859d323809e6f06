#ifndef RPCI_BENCH_STATS_H_
#define RPCI_BENCH_STATS_H_

#include <vector>

namespace rpci::bench {

// The p-quantile (0..1) of `v`; 0 when empty.
double Percentile(std::vector<double> v, double p);

// This process's resident set (VmRSS) and its peak (VmHWM) in MiB; 0 when
// /proc/self/status cannot be read.
double RssMb();
double PeakRssMb();

}  // namespace rpci::bench

#endif  // RPCI_BENCH_STATS_H_
