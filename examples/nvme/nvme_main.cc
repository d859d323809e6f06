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
#include <cstdio>
#include <thread>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
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
  int index = 0;
  uint64_t lba = 8;
  uint32_t blocks = 2;
  int pause_ms = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--device=", 0) == 0 && absl::SimpleAtoi(a.substr(9), &index)) continue;
    if (a.rfind("--lba=", 0) == 0 && absl::SimpleAtoi(a.substr(6), &lba)) continue;
    if (a.rfind("--blocks=", 0) == 0 && absl::SimpleAtoi(a.substr(9), &blocks)) continue;
    if (a.rfind("--pause-ms=", 0) == 0 && absl::SimpleAtoi(a.substr(11), &pause_ms)) continue;
    std::fprintf(stderr, "usage: nvme [--device=N] [--lba=N] [--blocks=N] [--pause-ms=N]\n");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> dev = rpci::lib::Device::OpenFromEnv(index);
  if (!dev.ok()) {
    std::fprintf(stderr, "nvme: %s\n", dev.status().ToString().c_str());
    return 1;
  }
  Result r;
  absl::Status st = Run(**dev, lba, blocks, pause_ms, &r);
  std::printf(
      "{\"ok\":%s,\"device\":\"%s\",\"model\":\"%s\",\"serial\":\"%s\",\"namespaces\":%u,\"blocks\":%llu,"
      "\"block_size\":%u,\"crc_written\":%u,\"crc_read\":%u,\"error\":\"%s\"}\n",
      st.ok() ? "true" : "false", (*dev)->device_id().c_str(), r.ctrl.model.c_str(), r.ctrl.serial.c_str(),
      r.ctrl.namespaces, static_cast<unsigned long long>(r.ns.blocks), r.ns.block_size, r.crc_written, r.crc_read,
      std::string(st.message()).c_str());
  (*dev)->Close().IgnoreError();
  return st.ok() ? 0 : 1;
}
