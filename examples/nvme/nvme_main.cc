// A small userspace NVMe driver run against a remote NVMe controller through
// librpci (nvme_driver.h): admin queues in the session's DMA space, Identify
// Controller and Namespace, an I/O queue pair, then blocks written and read
// back with a CRC-32C check. The device is the one the plugin attached to
// this container (RPCI_* environment, docs/librpci.md).
//
//   nvme [--device=0] [--lba=8] [--blocks=2] [--pause-ms=0]
// --pause-ms: after the I/O queues exist, print {"paused":true} and wait that
// long before the block I/O (fault tests kill the agent meanwhile).
// Prints one JSON summary line; exit status 0 only if every check passed.
#include <cstdint>
#include <cstdio>
#include <optional>
#include <thread>
#include <random>
#include <string>
#include <vector>

#include "common/flags.h"
#include "examples/device_flag.h"
#include "examples/nvme/librpci_transport.h"
#include "examples/nvme/nvme_driver.h"
#include "librpci/device.h"

namespace {

uint32_t Crc32c(const std::vector<uint8_t>& d) {
  uint32_t crc = ~0u;
  for (uint8_t b : d) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

struct Result {
  rpci::examples::nvme::ControllerInfo ctrl;
  rpci::examples::nvme::NamespaceInfo ns;
  uint32_t crc_written = 0, crc_read = 0;
};

absl::Status Run(rpci::lib::Device& dev, uint64_t lba, uint32_t blocks, int pause_ms, Result* r) {
  rpci::examples::nvme::LibrpciTransport transport(&dev);
  auto drv = rpci::examples::nvme::NvmeDriver::Start(&transport);
  if (!drv.ok()) return drv.status();
  auto ctrl = (*drv)->IdentifyController();
  if (!ctrl.ok()) return ctrl.status();
  r->ctrl = *ctrl;
  auto ns = (*drv)->IdentifyNamespace(1);
  if (!ns.ok()) return ns.status();
  r->ns = *ns;
  if (absl::Status s = (*drv)->CreateIoQueues(); !s.ok()) return s;
  if (pause_ms > 0) {
    std::printf("{\"paused\":true}\n");
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  }
  std::vector<uint8_t> out(uint64_t{blocks} * ns->block_size), in(out.size());
  std::mt19937 rng(std::random_device{}());
  for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  if (absl::Status s = (*drv)->WriteBlocks(1, lba, blocks, out.data(), ns->block_size); !s.ok()) return s;
  if (absl::Status s = (*drv)->ReadBlocks(1, lba, blocks, in.data(), ns->block_size); !s.ok()) return s;
  r->crc_written = Crc32c(out);
  r->crc_read = Crc32c(in);
  if (r->crc_written != r->crc_read) return absl::DataLossError("blocks read back differ (CRC-32C)");
  return (*drv)->Shutdown();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t index = 0, lba = 8, blocks = 2, pause_ms = 0;
  rpci::FlagSet flags("nvme [--device=N] [--lba=N] [--blocks=N] [--pause-ms=N]",
                      "Brings up the NVMe controller attached to this container through librpci, then writes and "
                      "reads back blocks.");
  rpci::examples::AddDeviceFlag(flags, &index);
  flags.Int("lba", &lba, "first block written and read");
  flags.Int("blocks", &blocks, "blocks written and read");
  flags.Int("pause-ms", &pause_ms,
            "after the I/O queues exist, print {\"paused\":true} and wait this long (ms) before the block I/O");
  flags.Require([&] { return lba >= 0 && blocks >= 0 && blocks <= UINT32_MAX && pause_ms >= 0; },
                "nvme: --lba, --blocks and --pause-ms must not be negative");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> dev = rpci::lib::Device::OpenFromEnv(static_cast<int>(index));
  if (!dev.ok()) {
    std::fprintf(stderr, "nvme: %s\n", dev.status().ToString().c_str());
    return 1;
  }
  Result r;
  absl::Status st =
      Run(**dev, static_cast<uint64_t>(lba), static_cast<uint32_t>(blocks), static_cast<int>(pause_ms), &r);
  std::printf(
      "{\"ok\":%s,\"device\":\"%s\",\"model\":\"%s\",\"serial\":\"%s\",\"namespaces\":%u,\"blocks\":%llu,"
      "\"block_size\":%u,\"crc_written\":%u,\"crc_read\":%u,\"error\":\"%s\"}\n",
      st.ok() ? "true" : "false", (*dev)->device_id().c_str(), r.ctrl.model.c_str(), r.ctrl.serial.c_str(),
      r.ctrl.namespaces, static_cast<unsigned long long>(r.ns.blocks), r.ns.block_size, r.crc_written, r.crc_read,
      std::string(st.message()).c_str());
  (*dev)->Close().IgnoreError();
  return st.ok() ? 0 : 1;
}
