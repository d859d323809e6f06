// Runs COPY and CRC32C jobs on an rpci-emu device through librpci and checks
// every result against a computation done here. The device is the one the
// plugin attached to this container (RPCI_* environment, docs/librpci.md);
// the device model is docs/rpci-emu.md.
//
//   emu_jobs [--device=0] [--rounds=4]
// Prints one JSON summary line; exit status 0 only if every check passed.
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "examples/device_bytes.h"
#include "examples/device_flag.h"
#include "librpci/device.h"

namespace {

// rpci-emu's BAR0 registers and descriptor layout (docs/rpci-emu.md).
constexpr uint16_t kBar = 0;
constexpr uint64_t kRegDeviceId = 0x00, kRegStatus = 0x08, kRegControl = 0x0C, kRegRingBase = 0x10,
                   kRegRingSize = 0x18, kRegDoorbell = 0x24, kRegIntCause = 0x28, kRegIntMask = 0x2C,
                   kRegCompletedLo = 0x38;
constexpr uint32_t kDeviceId = 0x52504349, kStatusEnabled = 1u << 1, kControlEnable = 1, kControlReset = 2;
constexpr uint32_t kIntCompletion = 1, kIntError = 2;
constexpr uint64_t kDescSize = 64;
constexpr uint8_t kOpCopy = 1, kOpCrc32c = 3, kFlagInterrupt = 1;
constexpr uint32_t kDescOk = 1, kErrAddressRange = 0x82;
constexpr uint32_t kRingSize = 16;

// CRC-32C computed bit by bit (independent of the device's table-driven one).
uint32_t LocalCrc32c(const uint8_t* p, size_t n) {
  uint32_t crc = ~0u;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

struct Desc {
  uint8_t opcode = 0, flags = 0;
  uint32_t length = 0;
  uint64_t src = 0, dst = 0;
};

using rpci::examples::Get32;
using rpci::examples::Put32;
using rpci::examples::Put64;

class Runner {
 public:
  explicit Runner(rpci::lib::Device& dev) : dev_(dev) {}

  absl::Status Setup() {
    absl::StatusOr<uint32_t> id = dev_.Read32(kBar, kRegDeviceId);
    if (!id.ok()) return id.status();
    if (*id != kDeviceId) return absl::FailedPreconditionError(absl::StrFormat("not an rpci-emu device (id 0x%x)", *id));
    absl::StatusOr<rpci::lib::DmaBuffer> ring = dev_.AllocDma(kRingSize * kDescSize, 64);
    if (!ring.ok()) return ring.status();
    ring_ = *ring;
    std::memset(ring_.host, 0, ring_.size);
    for (auto [reg, value] : {std::pair<uint64_t, uint32_t>{kRegControl, kControlReset},
                              {kRegRingBase, static_cast<uint32_t>(ring_.device_addr)},
                              {kRegRingBase + 4, static_cast<uint32_t>(ring_.device_addr >> 32)},
                              {kRegRingSize, kRingSize},
                              {kRegIntMask, kIntCompletion | kIntError},
                              {kRegControl, kControlEnable}}) {
      if (absl::Status s = dev_.Write32(kBar, reg, value); !s.ok()) return s;
    }
    absl::StatusOr<uint32_t> status = dev_.Read32(kBar, kRegStatus);
    if (!status.ok()) return status.status();
    if ((*status & kStatusEnabled) == 0) {
      return absl::FailedPreconditionError(absl::StrFormat("ring did not enable (STATUS 0x%x)", *status));
    }
    // The device writes status and result into the descriptors.
    return dev_.MapFromDevice(ring_);
  }

  // Queues `descs`, rings the doorbell and waits for one interrupt each.
  absl::Status Run(const std::vector<Desc>& descs, std::vector<uint32_t>* statuses, std::vector<uint32_t>* results,
                   std::vector<uint16_t>* vectors) {
    const uint32_t first = head_;
    for (const Desc& d : descs) {
      uint8_t* p = ring_.host + head_ * kDescSize;
      std::memset(p, 0, kDescSize);
      p[0] = d.opcode;
      p[1] = d.flags;
      Put32(p + 4, d.length);
      Put64(p + 8, d.src);
      Put64(p + 16, d.dst);
      Put64(p + 48, 0xC0FFEE00u + head_);  // cookie: the device must leave it alone
      if (absl::Status s = dev_.FlushToDevice(ring_, head_ * kDescSize, kDescSize); !s.ok()) return s;
      head_ = (head_ + 1) % kRingSize;
    }
    if (absl::Status s = dev_.RingDoorbell32(kBar, kRegDoorbell, head_); !s.ok()) return s;
    for (size_t i = 0; i < descs.size(); ++i) {
      absl::StatusOr<rpci::lib::Completion> c = dev_.WaitCompletion(absl::Seconds(10));
      if (!c.ok()) return c.status();
      if (c->data != (first + i) % kRingSize) {
        return absl::DataLossError(absl::StrFormat("interrupt for descriptor %u, expected %u", c->data, (first + i) % kRingSize));
      }
      vectors->push_back(c->vector);
      if (absl::Status s = dev_.Write32(kBar, kRegIntCause, c->cause); !s.ok()) return s;  // RW1C
    }
    for (size_t i = 0; i < descs.size(); ++i) {
      const uint8_t* p = ring_.host + ((first + i) % kRingSize) * kDescSize;
      statuses->push_back(Get32(p + 40));
      results->push_back(Get32(p + 44));
      uint64_t cookie;
      std::memcpy(&cookie, p + 48, 8);
      if (cookie != 0xC0FFEE00u + (first + i) % kRingSize) return absl::DataLossError("device changed a cookie");
    }
    return absl::OkStatus();
  }

 private:
  rpci::lib::Device& dev_;
  rpci::lib::DmaBuffer ring_;
  uint32_t head_ = 0;
};

int Fail(const std::string& what) {
  std::fprintf(stderr, "emu_jobs: %s\n", what.c_str());
  std::printf("{\"ok\":false}\n");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t device_index = 0, rounds = 4;
  rpci::FlagSet flags("emu_jobs [--device=N] [--rounds=N]",
                      "Runs COPY and CRC32C jobs on the rpci-emu device attached to this container (RPCI_* "
                      "environment) and checks them against local results.");
  rpci::examples::AddDeviceFlag(flags, &device_index);
  flags.Int("rounds", &rounds, "rounds of jobs (positive)");
  flags.Require([&] { return rounds > 0; }, "emu_jobs: --rounds must be positive");
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> opened =
      rpci::lib::Device::OpenFromEnv(static_cast<int>(device_index));
  if (!opened.ok()) return Fail("open: " + opened.status().ToString());
  rpci::lib::Device& dev = **opened;
  Runner runner(dev);
  if (absl::Status s = runner.Setup(); !s.ok()) return Fail("setup: " + s.ToString());

  std::mt19937 rng(20261122);
  const absl::Time jobs_start = absl::Now();
  const uint64_t sizes[] = {4096, 12345, 65536, 1 << 20};
  uint64_t bytes = 0;
  int jobs = 0;
  for (int r = 0; r < rounds; ++r) {
    const uint64_t len = sizes[r % 4];
    absl::StatusOr<rpci::lib::DmaBuffer> src = dev.AllocDma(len, 4096), dst = dev.AllocDma(len, 4096);
    if (!src.ok()) return Fail("alloc: " + src.status().ToString());
    if (!dst.ok()) return Fail("alloc: " + dst.status().ToString());
    for (uint64_t i = 0; i < len; ++i) src->host[i] = static_cast<uint8_t>(rng());
    std::memset(dst->host, 0, len);
    if (absl::Status s = dev.FlushToDevice(*src, 0, len); !s.ok()) return Fail("flush: " + s.ToString());
    if (absl::Status s = dev.FlushToDevice(*dst, 0, len); !s.ok()) return Fail("flush: " + s.ToString());
    if (absl::Status s = dev.MapFromDevice(*dst); !s.ok()) return Fail("map: " + s.ToString());
    std::vector<uint32_t> statuses, results;
    std::vector<uint16_t> vectors;
    const uint32_t n = static_cast<uint32_t>(len);
    absl::Status s = runner.Run({{kOpCopy, kFlagInterrupt, n, src->device_addr, dst->device_addr},
                                 {kOpCrc32c, kFlagInterrupt, n, src->device_addr, 0},
                                 // Reaches past the DMA space: refused, reported on vector 1.
                                 {kOpCopy, kFlagInterrupt, n, dev.dma_size() - n / 2, dst->device_addr}},
                                &statuses, &results, &vectors);
    if (!s.ok()) return Fail(absl::StrFormat("round %d: %s", r, s.ToString()));
    if (statuses[0] != kDescOk || vectors[0] != 0) return Fail(absl::StrFormat("round %d: COPY status 0x%x", r, statuses[0]));
    if (std::memcmp(dst->host, src->host, len) != 0) return Fail(absl::StrFormat("round %d: COPY result differs", r));
    if (statuses[1] != kDescOk || vectors[1] != 0) return Fail(absl::StrFormat("round %d: CRC32C status 0x%x", r, statuses[1]));
    const uint32_t want = LocalCrc32c(src->host, len);
    if (results[1] != want) {
      return Fail(absl::StrFormat("round %d: CRC32C 0x%08x from the device, 0x%08x here", r, results[1], want));
    }
    if (statuses[2] != kErrAddressRange || vectors[2] != 1) {
      return Fail(absl::StrFormat("round %d: out-of-range COPY gave status 0x%x on vector %u", r, statuses[2], vectors[2]));
    }
    if (std::memcmp(dst->host, src->host, len) != 0) return Fail(absl::StrFormat("round %d: refused job wrote", r));
    if (absl::Status f = dev.FreeDma(*src); !f.ok()) return Fail(f.ToString());
    if (absl::Status f = dev.FreeDma(*dst); !f.ok()) return Fail(f.ToString());
    bytes += 2 * len;
    jobs += 3;
  }
  absl::StatusOr<uint32_t> completed = dev.Read32(kBar, kRegCompletedLo);
  if (!completed.ok()) return Fail("read: " + completed.status().ToString());
  if (*completed != static_cast<uint32_t>(2 * rounds)) {
    return Fail(absl::StrFormat("device counted %u completed jobs, expected %d", *completed, 2 * rounds));
  }
  // Wall time of the job rounds: buffer fill, flush to the device, doorbells,
  // completions and the mirrored results, as the workload sees them.
  const double seconds = absl::ToDoubleSeconds(absl::Now() - jobs_start);
  std::printf("{\"ok\":true,\"device\":\"%s\",\"jobs\":%d,\"bytes\":%lu,\"seconds\":%.4f,\"mb_per_s\":%.1f,"
              "\"reconnects\":%lu,\"resent_kicks\":%lu}\n",
              dev.device_id().c_str(), jobs, static_cast<unsigned long>(bytes), seconds,
              seconds > 0 ? bytes / seconds / 1e6 : 0.0, static_cast<unsigned long>(dev.stats().reconnects),
              static_cast<unsigned long>(dev.stats().resent_kicks));
  dev.Close().IgnoreError();
  return 0;
}
