// Drives QEMU's `edu` device (1234:11e8) through librpci: the ident register,
// a factorial, a DMA round trip through the device's buffer (into the
// session's DMA space and back) and the interrupt that ends it. The device is
// the one the plugin attached to this container (RPCI_* environment,
// docs/librpci.md); it reaches the agent's host through VFIO, where device
// addresses are offsets into the session's DMA space (docs/sessions.md).
//
//   edu [--device=0]
// Prints one JSON summary line; exit status 0 only if every check passed.
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "examples/device_flag.h"
#include "librpci/device.h"

namespace {

// edu's BAR0 (QEMU docs/specs/edu.txt).
constexpr uint16_t kBar = 0;
constexpr uint64_t kIdent = 0x00, kFactorial = 0x08, kStatus = 0x20, kIrqStatus = 0x24, kIrqAck = 0x64;
constexpr uint64_t kDmaSrc = 0x80, kDmaDst = 0x88, kDmaCount = 0x90, kDmaCmd = 0x98;
constexpr uint32_t kEduIdent = 0x010000ed, kStatusComputing = 1;
constexpr uint64_t kDmaRun = 1, kDmaToRam = 2, kDmaIrq = 4, kDmaIrqStatus = 0x100;
constexpr uint64_t kEduBuffer = 0x40000;  // the device's own buffer (device side)
constexpr uint64_t kXfer = 2048;          // QEMU 7.2 aborts on a transfer ending at the buffer's end

absl::Status Check(bool ok, const std::string& what) {
  return ok ? absl::OkStatus() : absl::InternalError(what);
}

// Polls a register until (value & mask) == want, refreshing the mirror.
absl::StatusOr<uint64_t> Poll(rpci::lib::Device& dev, uint64_t reg, uint64_t mask, uint64_t want, bool wide) {
  absl::Time end = absl::Now() + absl::Seconds(20);
  while (absl::Now() < end) {
    if (absl::Status s = dev.Refresh(absl::Seconds(5)); !s.ok()) return s;
    absl::StatusOr<uint64_t> v = wide ? dev.Read64(kBar, reg) : absl::StatusOr<uint64_t>(dev.Read32(kBar, reg).value_or(0));
    if (!v.ok()) return v.status();
    if ((*v & mask) == want) return *v;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return absl::DeadlineExceededError(absl::StrFormat("register 0x%x never reached 0x%x", reg, want));
}

absl::Status Factorial(rpci::lib::Device& dev, uint32_t n, uint32_t want) {
  if (absl::Status s = dev.RingDoorbell32(kBar, kFactorial, n); !s.ok()) return s;
  if (absl::StatusOr<uint64_t> st = Poll(dev, kStatus, kStatusComputing, 0, false); !st.ok()) return st.status();
  absl::StatusOr<uint32_t> got = dev.Read32(kBar, kFactorial);
  if (!got.ok()) return got.status();
  return Check(*got == want, absl::StrFormat("factorial(%d) = %d, expected %d", n, *got, want));
}

// RAM -> edu buffer (polled), edu buffer -> RAM (interrupt); the data must
// come back unchanged, in the host copy, before the interrupt is seen.
absl::Status DmaRoundTrip(rpci::lib::Device& dev, absl::Duration* irq_latency) {
  absl::StatusOr<rpci::lib::DmaBuffer> src = dev.AllocDma(kXfer, 4096), dst = dev.AllocDma(kXfer, 4096);
  if (!src.ok() || !dst.ok()) return src.ok() ? dst.status() : src.status();
  for (uint64_t i = 0; i < kXfer; ++i) src->host[i] = static_cast<uint8_t>(i * 31 + 7);
  std::memset(dst->host, 0, kXfer);
  if (absl::Status s = dev.FlushToDevice(*src, 0, kXfer); !s.ok()) return s;
  if (absl::Status s = dev.FlushToDevice(*dst, 0, kXfer); !s.ok()) return s;
  if (absl::Status s = dev.MapFromDevice(*dst); !s.ok()) return s;
  for (auto [reg, v] : {std::pair<uint64_t, uint64_t>{kDmaSrc, src->device_addr}, {kDmaDst, kEduBuffer}, {kDmaCount, kXfer}}) {
    if (absl::Status s = dev.Write64(kBar, reg, v); !s.ok()) return s;
  }
  if (absl::Status s = dev.RingDoorbell(kBar, kDmaCmd, kDmaRun); !s.ok()) return s;
  if (absl::StatusOr<uint64_t> c = Poll(dev, kDmaCmd, kDmaRun, 0, true); !c.ok()) return c.status();
  for (auto [reg, v] : {std::pair<uint64_t, uint64_t>{kDmaSrc, kEduBuffer}, {kDmaDst, dst->device_addr}}) {
    if (absl::Status s = dev.Write64(kBar, reg, v); !s.ok()) return s;
  }
  absl::Time rung = absl::Now();
  if (absl::Status s = dev.RingDoorbell(kBar, kDmaCmd, kDmaRun | kDmaToRam | kDmaIrq); !s.ok()) return s;
  // No more kicks from here: the agent pushes the completion when edu's MSI fires.
  absl::StatusOr<rpci::lib::Completion> c = dev.WaitCompletion(absl::Seconds(20));
  if (!c.ok()) return c.status();
  *irq_latency = absl::Now() - rung;
  if (std::memcmp(src->host, dst->host, kXfer) != 0) return absl::InternalError("DMA data differs after the interrupt");
  absl::StatusOr<uint32_t> irq = dev.Read32(kBar, kIrqStatus);
  if (!irq.ok()) return irq.status();
  if (absl::Status s = Check(*irq == kDmaIrqStatus, absl::StrFormat("irq status 0x%x", *irq)); !s.ok()) return s;
  return dev.RingDoorbell32(kBar, kIrqAck, kDmaIrqStatus);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t index = 0;
  rpci::FlagSet flags("edu [--device=N]", "Drives the QEMU edu device attached to this container through librpci.");
  rpci::examples::AddDeviceFlag(flags, &index);
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> dev = rpci::lib::Device::OpenFromEnv(static_cast<int>(index));
  if (!dev.ok()) {
    std::fprintf(stderr, "edu: %s\n", dev.status().ToString().c_str());
    return 1;
  }
  absl::Status st;
  absl::StatusOr<uint32_t> ident = (*dev)->Read32(kBar, kIdent);
  st = !ident.ok() ? ident.status() : Check(*ident == kEduIdent, absl::StrFormat("ident 0x%08x", *ident));
  if (st.ok()) st = Factorial(**dev, 10, 3628800);
  absl::Duration latency;
  if (st.ok()) st = DmaRoundTrip(**dev, &latency);
  std::printf("{\"ok\":%s,\"device\":\"%s\",\"ident\":\"0x%08x\",\"dma_bytes\":%d,\"irq_ms\":%.1f,\"error\":\"%s\"}\n",
              st.ok() ? "true" : "false", (*dev)->device_id().c_str(), ident.value_or(0), static_cast<int>(kXfer),
              absl::ToDoubleMilliseconds(latency), std::string(st.message()).c_str());
  (*dev)->Close().IgnoreError();
  return st.ok() ? 0 : 1;
}
