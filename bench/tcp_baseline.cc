#include "bench/tcp_baseline.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <tuple>
#include <vector>

namespace rpci::bench {
namespace {

using Clock = std::chrono::steady_clock;
double Secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

// A listening socket on 127.0.0.1 (any port); its address in *a.
int LoopbackListener(sockaddr_in* a, int backlog) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  *a = sockaddr_in{};
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(l, reinterpret_cast<sockaddr*>(a), sizeof(*a));
  socklen_t len = sizeof(*a);
  getsockname(l, reinterpret_cast<sockaddr*>(a), &len);
  listen(l, backlog);
  return l;
}

// Two connected TCP sockets over 127.0.0.1.
std::pair<int, int> TcpPair() {
  sockaddr_in a;
  int l = LoopbackListener(&a, 1);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  int s = accept(l, nullptr, nullptr);
  close(l);
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return {c, s};
}

double TcpGbps(size_t total) {
  auto [c, s] = TcpPair();
  std::thread reader([s = s, total] {
    std::vector<char> buf(1 << 20);
    size_t got = 0;
    while (got < total) {
      ssize_t n = read(s, buf.data(), buf.size());
      if (n <= 0) break;
      got += n;
    }
  });
  std::vector<char> buf(1 << 20, 1);
  auto t0 = Clock::now();
  size_t sent = 0;
  while (sent < total) {
    ssize_t n = write(c, buf.data(), std::min(buf.size(), total - sent));
    if (n <= 0) break;
    sent += n;
  }
  reader.join();
  double secs = Secs(Clock::now() - t0);
  close(c);
  close(s);
  return total * 8 / secs / 1e9;
}

namespace {

// Moves exactly `len` bytes of `b` through `io` (read or write) on `fd`;
// false on EOF or error.
template <typename Io, typename Byte>
bool All(Io io, int fd, Byte* b, size_t len) {
  for (size_t done = 0; done < len;) {
    ssize_t n = io(fd, b + done, len - done);
    if (n <= 0) return false;
    done += n;
  }
  return true;
}

bool ReadAll(int fd, char* b, size_t len) { return All(read, fd, b, len); }
bool WriteAll(int fd, const char* b, size_t len) { return All(write, fd, b, len); }

}  // namespace

TcpEcho::TcpEcho(size_t bytes) : bytes_(bytes), buf_(bytes, 1) {
  std::tie(near_, far_) = TcpPair();
  echo_ = std::thread([s = far_, bytes] {
    std::vector<char> b(bytes);
    while (ReadAll(s, b.data(), bytes) && WriteAll(s, b.data(), bytes)) {
    }
  });
}

TcpEcho::~TcpEcho() {
  shutdown(near_, SHUT_RDWR);
  echo_.join();
  close(near_);
  close(far_);
}

double TcpEcho::RequestResponseUs() {
  auto t0 = Clock::now();
  if (!WriteAll(near_, buf_.data(), bytes_) || !ReadAll(near_, buf_.data(), bytes_)) return -1;
  return Secs(Clock::now() - t0) * 1e6;
}

std::vector<double> TcpRequestResponseUs(size_t bytes, int iters) {
  TcpEcho echo(bytes);
  std::vector<double> rtts;
  for (int i = 0; i < iters; ++i) {
    const double us = echo.RequestResponseUs();
    if (us < 0) break;
    rtts.push_back(us);
  }
  return rtts;
}

std::vector<double> TcpRttUs(int iters) { return TcpRequestResponseUs(72, iters); }

// Connect to a loopback listener and do one 72-byte round trip: the floor
// for anything that opens a connection and exchanges a request.
std::vector<double> TcpConnectUs(int iters) {
  sockaddr_in a;
  int l = LoopbackListener(&a, 16);
  std::thread server([l, iters] {
    char b[72];
    for (int i = 0; i < iters; ++i) {
      int s = accept(l, nullptr, nullptr);
      if (s < 0) break;
      if (read(s, b, sizeof(b)) > 0) write(s, b, sizeof(b)) > 0 ? void() : void();
      close(s);
    }
  });
  std::vector<double> us;
  char b[72] = {};
  for (int i = 0; i < iters; ++i) {
    auto t0 = Clock::now();
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || write(c, b, sizeof(b)) <= 0 ||
        read(c, b, sizeof(b)) <= 0) {
      close(c);
      break;
    }
    us.push_back(Secs(Clock::now() - t0) * 1e6);
    close(c);
  }
  server.join();
  close(l);
  return us;
}

}  // namespace rpci::bench
