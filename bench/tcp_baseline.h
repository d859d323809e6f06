#ifndef RPCI_BENCH_TCP_BASELINE_H_
#define RPCI_BENCH_TCP_BASELINE_H_

// The machine's own limits that benchmarks put their figures next to, taken
// with plain loopback TCP sockets in the same run.
#include <netinet/in.h>

#include <cstddef>
#include <thread>
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

// One loopback socket pair whose far end echoes requests of `bytes`: it
// reads all `bytes`, then writes them back. The connection stays up between
// requests (warm, as a long-lived session's is), so a benchmark can take
// its samples interleaved with another path's.
class TcpEcho {
 public:
  explicit TcpEcho(size_t bytes);
  ~TcpEcho();  // closes the near end; the echo thread ends
  TcpEcho(const TcpEcho&) = delete;
  TcpEcho& operator=(const TcpEcho&) = delete;
  // One request/response of `bytes` each way, in us; negative on failure.
  double RequestResponseUs();

 private:
  size_t bytes_;
  int near_ = -1, far_ = -1;
  std::vector<char> buf_;
  std::thread echo_;
};

// `iters` request/responses of `bytes` each way over one TcpEcho; each in us.
std::vector<double> TcpRequestResponseUs(size_t bytes, int iters);

// Connect to a loopback listener and do one 72-byte round trip, `iters`
// times; each in us. The floor for anything that opens a connection and
// exchanges a request.
std::vector<double> TcpConnectUs(int iters);

}  // namespace rpci::bench

#endif  // RPCI_BENCH_TCP_BASELINE_H_
