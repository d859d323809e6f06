// The workload of the fault-injection suite: a pod's container (or a process
// in the compute namespace) that streams numbered register writes to an
// rpci-emu device through librpci, attached from the RPCI_* environment the
// plugin (or client_helper --env_dir) produced.
//
// Write i carries the value i to SCRATCH (BAR0 + 0x40). After every batch the
// workload flushes and reads SCRATCH back: a read never passes the writes
// before it, so when it returns the value of the batch's last write, every
// write of the batch is acknowledged (applied on the device). Prints one JSON
// object {writes, issued, acked, reconnects, replayed, refused,
// max_stall_ms, error}; exit 0 only if all writes were acknowledged.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/time/clock.h"
#include "common/flags.h"
#include "librpci/device.h"
#include "nlohmann/json.hpp"

namespace {

constexpr uint16_t kBar = 0;
constexpr uint64_t kRegScratch = 0x40;

void WriteProgress(const std::string& path, int64_t acked) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << acked << "\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  int64_t writes = 2000, duration_ms = 4000, batch = 20;
  std::string progress_file;
  rpci::FlagSet flags("stream_workload [flags]",
                      "Streams numbered writes to rpci-emu SCRATCH through librpci (device 0 of the RPCI_* "
                      "environment) and reads each batch back.");
  flags.Int("writes", &writes, "number of register writes (values 0 .. writes-1)");
  flags.Int("duration_ms", &duration_ms, "spread the writes over this long");
  flags.Int("batch", &batch, "writes per flush + read-back");
  flags.String("progress_file", &progress_file, "rewritten with the acknowledged count after each batch");
  flags.Require([&] { return writes > 0 && batch > 0 && duration_ms >= 0; },
                "--writes and --batch must be positive, --duration_ms not negative");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  nlohmann::json out = {{"writes", writes}, {"issued", 0}, {"acked", 0}, {"max_stall_ms", 0}};
  auto finish = [&](rpci::lib::Device* dev, const absl::Status& error) {
    if (dev != nullptr) {
      rpci::client::ClientStats stats = dev->stats();
      out["reconnects"] = stats.reconnects;
      out["replayed"] = stats.replayed_writes;
      out["refused"] = stats.refused;
    }
    if (!error.ok()) out["error"] = error.ToString();
    std::printf("%s\n", out.dump().c_str());
    std::fflush(stdout);
    return error.ok() ? 0 : 1;
  };
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> opened = rpci::lib::Device::OpenFromEnv(0);
  if (!opened.ok()) return finish(nullptr, opened.status());
  rpci::lib::Device& dev = **opened;
  const absl::Duration pause = absl::Milliseconds(duration_ms) * batch / writes;
  absl::Time last_ack = absl::Now();
  absl::Duration max_stall = absl::ZeroDuration();
  for (int64_t i = 0; i < writes; ++i) {
    if (absl::Status s = dev.Write32(kBar, kRegScratch, static_cast<uint32_t>(i)); !s.ok()) return finish(&dev, s);
    out["issued"] = i + 1;
    if ((i + 1) % batch != 0 && i + 1 != writes) continue;
    if (absl::Status s = dev.Flush(); !s.ok()) return finish(&dev, s);
    absl::StatusOr<uint32_t> back = dev.Read32(kBar, kRegScratch);
    if (!back.ok()) return finish(&dev, back.status());
    if (*back != static_cast<uint32_t>(i)) {
      return finish(&dev, absl::DataLossError("SCRATCH holds " + std::to_string(*back) + " after write " +
                                              std::to_string(i)));
    }
    const absl::Time now = absl::Now();
    max_stall = std::max(max_stall, now - last_ack);
    last_ack = now;
    out["acked"] = i + 1;
    out["max_stall_ms"] = absl::ToInt64Milliseconds(max_stall);
    WriteProgress(progress_file, i + 1);
    absl::SleepFor(pause);
  }
  absl::Status closed = dev.Close();
  return finish(&dev, closed);
}
