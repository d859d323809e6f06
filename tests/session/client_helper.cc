// The compute side of cross-namespace session tests: reserves the session for
// grant "g1" (the plugin's part), attaches it through librpci (the
// workload's part) and streams --writes register writes carrying 0, 1, 2 ...
// to BAR0 + 0x200, pacing them over --duration_ms so that a partition lands
// in the middle, then waits until all are applied. Prints one JSON object:
// {"writes", "reconnects", "replayed", "refused"}; exit 1 on any error.
// With --env_dir it only reserves (as the plugin does on Allocate) and writes
// <env_dir>/key (hex, 0600) and <env_dir>/env (RPCI_*=value lines).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "client/session_client.h"
#include "common/flags.h"
#include "common/log.h"
#include "librpci/device.h"
#include "nlohmann/json.hpp"

int main(int argc, char** argv) {
  std::string endpoint, env_dir;
  int64_t writes = 2000, duration_ms = 6000;
  rpci::FlagSet flags("session_client_helper --endpoint=HOST:PORT [flags]",
                      "Streams paced register writes through librpci for cross-namespace tests.");
  flags.String("endpoint", &endpoint, "agent SessionControl endpoint");
  flags.Int("writes", &writes, "number of register writes");
  flags.Int("duration_ms", &duration_ms, "spread the writes over this long");
  flags.String("env_dir", &env_dir, "only reserve; write the container key file and environment here");
  flags.Require([&] { return !endpoint.empty() && writes > 0; }, "--endpoint and a positive --writes are required");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  auto fail = [](const char* what, const absl::Status& s) {
    std::fprintf(stderr, "client helper: %s: %s\n", what, s.ToString().c_str());
    return 1;
  };
  absl::StatusOr<rpci::client::SessionTicket> ticket =
      rpci::client::ControlClient().Reserve(endpoint, {"g1", "token", "node-b"});
  if (!ticket.ok()) return fail("reserve", ticket.status());
  if (!env_dir.empty()) {
    const std::string key_file = env_dir + "/key";
    int fd = ::open(key_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const std::string hex = ticket->key.Hex() + "\n";
    if (fd < 0 || ::write(fd, hex.data(), hex.size()) != static_cast<ssize_t>(hex.size())) {
      return fail("key file", absl::InternalError(key_file));
    }
    ::close(fd);
    std::ofstream env(env_dir + "/env");
    env << "RPCI_DEVICE_IDS=dev0\nRPCI_DEVICE_COUNT=1\nRPCI_0_DEVICE_ID=dev0\n"
        << "RPCI_0_SESSION_ENDPOINT=" << endpoint << "\nRPCI_0_SESSION_ID=" << ticket->session_id.ToString()
        << "\nRPCI_0_SESSION_KEY_FILE=" << key_file << "\nRPCI_0_FABRIC_PROVIDER=tcp;ofi_rxm\n";
    return env ? 0 : fail("env file", absl::InternalError(env_dir));
  }
  rpci::lib::DeviceConfig config;
  config.device_id = "dev0";
  config.endpoint = endpoint;
  config.session_id = ticket->session_id;
  config.key = ticket->key;
  auto device = rpci::lib::Device::Open(config);
  if (!device.ok()) return fail("open", device.status());
  rpci::lib::Device& dev = **device;
  const int64_t batch = 20;
  const useconds_t pause = static_cast<useconds_t>(duration_ms * 1000 * batch / writes);
  for (int64_t i = 0; i < writes; ++i) {
    if (absl::Status s = dev.Write64(0, 0x200, static_cast<uint64_t>(i)); !s.ok()) return fail("write", s);
    if ((i + 1) % batch == 0) {
      if (absl::Status s = dev.Flush(); !s.ok()) return fail("flush", s);
      usleep(pause);
    }
  }
  // A read never passes the writes before it: all are applied when it returns.
  absl::StatusOr<uint64_t> last = dev.Read64(0, 0x200);
  if (!last.ok()) return fail("read", last.status());
  if (*last != static_cast<uint64_t>(writes - 1)) {
    return fail("read", absl::DataLossError("register holds " + std::to_string(*last)));
  }
  rpci::client::ClientStats stats = dev.stats();
  nlohmann::json out = {{"writes", writes},
                        {"reconnects", stats.reconnects},
                        {"replayed", stats.replayed_writes},
                        {"refused", stats.refused}};
  std::printf("%s\n", out.dump().c_str());
  dev.Close().IgnoreError();
  return 0;
}
