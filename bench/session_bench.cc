// Session benchmarks (not a test): DMA mirror throughput vs loopback TCP,
// doorbell->completion RTT vs TCP ping-pong, session open latency.
//   bazel run //bench:session -- [--json]

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "agent/session/session_server.h"
#include "agent/session/testing/test_device.h"
#include "bench/stats.h"
#include "bench/tcp_baseline.h"
#include "client/session_client.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"

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

}  // namespace

int main(int argc, char** argv) {
  bool json_only = false;
  int scale = 1;  // iteration counts are divided by this
  rpci::fabric::FabricConfig fabric = rpci::fabric::LoopbackConfig();
  fabric.op_timeout = absl::Seconds(10);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("usage: session_bench [--json] [--provider=P] [--node=ADDR] [--scale=N]\n  Runs an in-process agent "
                  "session server and client (default tcp;ofi_rxm on 127.0.0.1) and prints\n  mirror throughput, "
                  "doorbell RTT and open latency next to plain loopback TCP.\n  --json      print only one JSON "
                  "object\n  --provider  data-path provider (e.g. verbs;ofi_rxm)\n  --node      address both ends "
                  "bind (the RDMA NIC's)\n  --scale     divide iteration counts by N (slow fabrics, e.g. Soft-RoCE "
                  "under emulation)\n");
      return 0;
    }
    if (a == "--json") {
      json_only = true;
    } else if (a.rfind("--provider=", 0) == 0) {
      fabric.provider = a.substr(11);
    } else if (a.rfind("--node=", 0) == 0) {
      fabric.node = a.substr(7);
    } else if (a.rfind("--scale=", 0) == 0 && std::atoi(a.c_str() + 8) > 0) {
      scale = std::atoi(a.c_str() + 8);
    } else {
      std::fprintf(stderr, "unknown flag %s (try --help)\n", a.c_str());
      return 2;
    }
  }
  rpci::Logger::SetMinLevel(rpci::LogLevel::kError);
  rpci::MetricsRegistry metrics;
  rpci::agent::GrantTable grants;
  grants.Upsert({"bench", "dev0", "node", "token", absl::InfiniteFuture()});
  rpci::agent::testing::TestDevice device(4 << 20);
  rpci::agent::SessionServerOptions opts;
  opts.metrics = &metrics;
  opts.fabric = fabric;
  rpci::client::ClientOptions client_opts;
  client_opts.fabric = fabric;
  auto server = rpci::agent::SessionServer::Create(opts, &grants, {{"dev0", &device}});
  if (!server.ok()) {
    std::fprintf(stderr, "session server: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(fabric.node + ":0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(server->get());
  auto grpc_server = builder.BuildAndStart();
  const std::string endpoint = fabric.node + ":" + std::to_string(port);

  nlohmann::json out;
  // Session open latency: reserve (plugin) + attach (workload); then close.
  std::vector<double> open_ms, reserve_ms;
  for (int i = 0; i < std::max(3, 30 / scale); ++i) {
    auto t0 = Clock::now();
    auto ticket = rpci::client::ReserveSession(endpoint, nullptr, "bench", "token", "node");
    if (!ticket.ok()) return Fail("reserve", ticket.status());
    reserve_ms.push_back(Secs(Clock::now() - t0) * 1e3);
    auto c = rpci::client::SessionClient::Attach(*ticket, client_opts);
    if (!c.ok()) {
      std::fprintf(stderr, "open %d: ", i);
      return Fail("attach", c.status());
    }
    open_ms.push_back(Secs(Clock::now() - t0) * 1e3);
    (*c)->Close().IgnoreError();
    // The session belongs to the allocation until the plugin ends it.
    rpci::client::CloseSession(*ticket, nullptr, /*detach=*/false).IgnoreError();
  }
  out["open_ms_p50"] = Percentile(open_ms, 0.5);
  out["open_ms_p99"] = Percentile(open_ms, 0.99);
  out["open_reserve_ms_p50"] = Percentile(reserve_ms, 0.5);
  std::vector<double> connect_us = TcpConnectUs(200);
  out["tcp_connect_us_p50"] = Percentile(connect_us, 0.5);
  out["open_ratio"] = out["open_ms_p50"].get<double>() * 1e3 / out["tcp_connect_us_p50"].get<double>();

  auto ticket = rpci::client::ReserveSession(endpoint, nullptr, "bench", "token", "node");
  auto client = rpci::client::SessionClient::Attach(*ticket, client_opts);
  if (!client.ok()) return Fail("attach", client.status());
  rpci::client::SessionClient& c = **client;

  // DMA mirror throughput per flush size.
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
    if (size == (size_t{1} << 20)) out["mirror_gbps_1mib"] = gbps;
  }
  out["mirror_gbps_by_size"] = mirror;
  out["tcp_gbps"] = TcpGbps(size_t{1} << 30);
  out["mirror_ratio"] = out["mirror_gbps_1mib"].get<double>() / out["tcp_gbps"].get<double>();

  // Doorbell -> completion round trip (an empty copy job).
  std::vector<double> rtt;
  for (int i = 0; i < 50 + 1000 / scale; ++i) {
    auto t0 = Clock::now();
    if (absl::Status st = c.Write(0, rpci::agent::testing::TestDevice::kDoorbell, 8, i); !st.ok()) return Fail("doorbell", st);
    if (auto done = c.WaitCompletion(absl::Seconds(5)); !done.ok()) return Fail("completion", done.status());
    if (i >= 50) rtt.push_back(Secs(Clock::now() - t0) * 1e6);
  }
  out["doorbell_rtt_us_p50"] = Percentile(rtt, 0.5);
  out["doorbell_rtt_us_p99"] = Percentile(rtt, 0.99);
  std::vector<double> tcp_rtt = TcpRttUs(2000);
  out["tcp_rtt_us_p50"] = Percentile(tcp_rtt, 0.5);
  out["tcp_rtt_us_p99"] = Percentile(tcp_rtt, 0.99);
  out["doorbell_ratio"] = out["doorbell_rtt_us_p50"].get<double>() / out["tcp_rtt_us_p50"].get<double>();

  // One register write until the agent acknowledges it applied (Write+Sync).
  std::vector<double> mmio_us;
  for (int i = 0; i < 50 + 1000 / scale; ++i) {
    auto t0 = Clock::now();
    if (absl::Status st = c.Write(0, 0x208, 8, i); !st.ok()) return Fail("write", st);
    if (absl::Status st = c.Sync(absl::Seconds(5)); !st.ok()) return Fail("sync", st);
    if (i >= 50) mmio_us.push_back(Secs(Clock::now() - t0) * 1e6);
  }
  out["mmio_write_us_p50"] = Percentile(mmio_us, 0.5);
  out["mmio_write_us_p99"] = Percentile(mmio_us, 0.99);
  out["mmio_write_ratio"] = out["mmio_write_us_p50"].get<double>() / out["tcp_rtt_us_p50"].get<double>();

  // Posted MMIO write rate (batched through the ring, then synced).
  auto t0 = Clock::now();
  const int writes = 200000 / scale;
  for (int i = 0; i < writes; ++i) {
    if (absl::Status st = c.Write(0, 0x200, 8, i); !st.ok()) return Fail("write", st);
  }
  if (absl::Status st = c.Sync(absl::Seconds(30)); !st.ok()) return Fail("sync", st);
  out["mmio_writes_per_sec"] = writes / Secs(Clock::now() - t0);
  // The same count of 32-byte records streamed over loopback TCP.
  out["tcp_records_per_sec"] = TcpGbps(static_cast<size_t>(writes) * 32) * 1e9 / 8 / 32;
  out["mmio_rate_ratio"] = out["mmio_writes_per_sec"].get<double>() / out["tcp_records_per_sec"].get<double>();
  out["provider"] = fabric.provider;
  out["node"] = fabric.node;
  out["scale"] = scale;

  c.Close().IgnoreError();
  grpc_server->Shutdown(std::chrono::system_clock::now());
  (*server)->Stop();

  std::printf("%s\n", out.dump().c_str());
  if (!json_only) {
    std::printf("\n%-34s %14s\n", "metric", "value");
    for (auto& [k, v] : out.items()) {
      if (v.is_number()) std::printf("%-34s %12.3f\n", k.c_str(), v.get<double>());
    }
    for (auto& [k, v] : mirror.items()) std::printf("mirror_gbps @ %-20s %12.3f\n", k.c_str(), v.get<double>());
  }
  return 0;
}
