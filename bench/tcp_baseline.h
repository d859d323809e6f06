#ifndef RPCI_BENCH_TCP_BASELINE_H_
#define RPCI_BENCH_TCP_BASELINE_H_

// The machine's own limits that benchmarks put their figures next to, taken
// with plain loopback TCP sockets in the same run.
#include <netinet/in.h>

#include <cstddef>
#include <utility>
#include <vector>

namespace rpci::bench {

// A listening socket on 127.0.0.1 (any port); its address in *a.
int LoopbackListener(sockaddr_in* a, int backlog);

// Two connected TCP sockets over 127.0.0.1 (TCP_NODELAY on both).
std::pair<int, int> TcpPair();

// Streams `total` bytes over a loopback socket pair in 1 MiB writes, a
// reader thread draining the other end; Gbit/s.
double TcpGbps(size_t total);

// `iters` 72-byte ping-pongs over a loopback socket pair; each round trip in us.
std::vector<double> TcpRttUs(int iters);

// `iters` request/responses of `bytes` each way over a loopback socket pair
// (the peer reads all `bytes`, then writes them back); each in us.
std::vector<double> TcpRequestResponseUs(size_t bytes, int iters);

// Connect to a loopback listener and do one 72-byte round trip, `iters`
// times; each in us. The floor for anything that opens a connection and
// exchanges a request.
std::vector<double> TcpConnectUs(int iters);

}  // namespace rpci::bench

#endif  // RPCI_BENCH_TCP_BASELINE_H_
