// The agent side of cross-namespace session tests: a SessionServer exporting
// one device ("dev0", grant "g1", token "token": the register-file test
// device, or rpci-emu with --device=emu) on a given address, run under
// `ip netns exec`. Writes "ready" to --ready_file
// once serving; on SIGTERM stops and writes every register write the device
// applied, in order, to --applied_file as a JSON array of [offset, value].
// With --device_log every applied write is also appended to that file at
// once (16 bytes: offset, value), so the record survives SIGKILL; with
// --state_dir a restarted helper resumes the sessions of the one killed.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "agent/backends/emu_backend.h"
#include "agent/session/session_server.h"
#include "agent/session/testing/logged_device.h"
#include "agent/session/testing/test_device.h"
#include "common/files.h"
#include "common/flags.h"
#include "common/log.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"

namespace {

std::atomic<bool> stop{false};
void OnSignal(int) { stop = true; }

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1", ready_file, applied_file, device_log, state_dir, device_kind = "test";
  int64_t port = 0, grace_ms = 10000;
  rpci::FlagSet flags("session_agent_helper [flags]",
                      "Serves one test device over SessionControl + tcp;ofi_rxm for cross-namespace tests.");
  flags.String("address", &address, "address to listen on (gRPC and fabric)");
  flags.Int("port", &port, "gRPC port (0 = any; the chosen port is written to --ready_file)");
  flags.Int("grace_ms", &grace_ms, "session grace before a silent client is torn down");
  flags.String("ready_file", &ready_file, "written with the gRPC endpoint once serving");
  flags.String("applied_file", &applied_file, "written with the applied write values on SIGTERM");
  flags.String("device_log", &device_log, "append every applied write to this file at once");
  flags.String("device", &device_kind, "test (register file) or emu (rpci-emu, 4 MiB DMA)");
  flags.String("state_dir", &state_dir, "session checkpoint directory (survives restarts)");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);

  rpci::MetricsRegistry metrics;
  rpci::agent::GrantTable grants;
  grants.Upsert({"g1", "dev0", "", "token", absl::InfiniteFuture()});
  rpci::agent::testing::TestDevice device(1 << 20);
  std::unique_ptr<rpci::agent::EmuBackend> emu;
  rpci::agent::SessionDevice* exported = &device;
  if (device_kind == "emu") {
    auto backend = rpci::agent::EmuBackend::Create(4 << 20);
    if (!backend.ok()) {
      std::fprintf(stderr, "emu: %s\n", std::string(backend.status().message()).c_str());
      return 1;
    }
    emu = std::move(*backend);
    exported = emu.get();
  } else if (device_kind != "test") {
    std::fprintf(stderr, "--device must be test or emu\n");
    return 2;
  }
  int log_fd = -1;
  if (!device_log.empty()) {
    log_fd = ::open(device_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      std::fprintf(stderr, "cannot open %s\n", device_log.c_str());
      return 1;
    }
  }
  rpci::agent::testing::LoggedDevice logged(exported, log_fd);
  rpci::agent::SessionServerOptions opts;
  opts.metrics = &metrics;
  opts.state_dir = state_dir;
  opts.fabric.node = address;
  opts.grace = absl::Milliseconds(grace_ms);
  auto server = rpci::agent::SessionServer::Create(opts, &grants, {{"dev0", &logged}});
  if (!server.ok()) {
    std::fprintf(stderr, "session server: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(address + ":" + std::to_string(port), grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(server->get());
  auto grpc_server = builder.BuildAndStart();
  if (grpc_server == nullptr || bound == 0) {
    std::fprintf(stderr, "cannot listen on %s:%d\n", address.c_str(), static_cast<int>(port));
    return 1;
  }
  const std::string endpoint = address + ":" + std::to_string(bound) + "\n";
  if (!ready_file.empty() && !rpci::WriteFileAtomically(ready_file, endpoint, 0644).ok()) {
    std::fprintf(stderr, "cannot write %s\n", ready_file.c_str());
    return 1;
  }
  while (!stop) usleep(20000);
  grpc_server->Shutdown(std::chrono::system_clock::now());
  (*server)->Stop();
  nlohmann::json values = nlohmann::json::array();
  for (const auto& [offset, value] : device.applied()) values.push_back({offset, value});
  if (!applied_file.empty() && !rpci::WriteFileAtomically(applied_file, values.dump() + "\n", 0644).ok()) return 1;
  return 0;
}
