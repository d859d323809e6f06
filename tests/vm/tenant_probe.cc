// A workload for the tenant-isolation tests (//tests/vm:vfio_e2e_test): runs
// a list of register and DMA-space operations on the device the plugin
// attached (librpci, RPCI_* environment) in order, and prints one JSON
// summary line with every read's result.
//
//   tenant_probe OP...
//     w32:BAR:OFF:VAL, w64:BAR:OFF:VAL   posted register writes
//     r32:BAR:OFF, r64:BAR:OFF           register reads (after the writes)
//     fill:BYTE     the whole DMA space set to BYTE and flushed to the device
//     dma           the whole DMA space pulled from the device; reports how
//                   many bytes are not zero and the first such offset
//     sleep:MS      applies the writes so far, then waits (device timers)
// Numbers take C prefixes (0x...). Exit status 0 only if every operation ran.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "librpci/device.h"
#include "nlohmann/json.hpp"

namespace {

bool ParseNumber(const std::string& s, uint64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtoull(s.c_str(), &end, 0);
  return end != nullptr && *end == '\0';
}

// The whole DMA space, pulled from the device into a host copy that starts
// all ones (so a pull that did not happen cannot look like zeros).
absl::Status CheckDma(rpci::lib::Device& dev, const rpci::lib::DmaBuffer& all, nlohmann::json* result) {
  std::memset(all.host, 0xff, all.size);
  if (absl::Status s = dev.SyncFromDevice(all, 0, all.size); !s.ok()) return s;
  uint64_t nonzero = 0, first = all.size;
  for (uint64_t i = 0; i < all.size; ++i) {
    if (all.host[i] == 0) continue;
    if (nonzero++ == 0) first = i;
  }
  (*result)["nonzero"] = nonzero;
  if (nonzero > 0) (*result)["first_nonzero"] = absl::StrFormat("0x%x", first);
  return absl::OkStatus();
}

absl::Status RunOp(rpci::lib::Device& dev, const rpci::lib::DmaBuffer& all, const std::string& op,
                   nlohmann::json* result) {
  std::vector<std::string> f = absl::StrSplit(op, ':');
  std::vector<uint64_t> n(f.size(), 0);
  for (size_t i = 1; i < f.size(); ++i) {
    if (!ParseNumber(f[i], &n[i])) return absl::InvalidArgumentError(absl::StrCat("bad number in ", op));
  }
  const uint16_t bar = static_cast<uint16_t>(n.size() > 1 ? n[1] : 0);
  if ((f[0] == "w32" || f[0] == "w64") && f.size() == 4) {
    return f[0] == "w32" ? dev.Write32(bar, n[2], static_cast<uint32_t>(n[3])) : dev.Write64(bar, n[2], n[3]);
  }
  if ((f[0] == "r32" || f[0] == "r64") && f.size() == 3) {
    absl::StatusOr<uint64_t> v = f[0] == "r64" ? dev.Read64(bar, n[2]) : absl::StatusOr<uint64_t>(dev.Read32(bar, n[2]));
    if (!v.ok()) return v.status();
    (*result)["value"] = absl::StrFormat("0x%x", *v);
    return absl::OkStatus();
  }
  if (f[0] == "fill" && f.size() == 2) {
    std::memset(all.host, static_cast<int>(n[1] & 0xff), all.size);
    return dev.FlushToDevice(all, 0, all.size);
  }
  if (f[0] == "dma" && f.size() == 1) return CheckDma(dev, all, result);
  if (f[0] == "sleep" && f.size() == 2) {
    if (absl::Status s = dev.Refresh(absl::Seconds(20)); !s.ok()) return s;  // the writes before are applied
    absl::SleepFor(absl::Milliseconds(n[1]));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown operation ", op));
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<std::unique_ptr<rpci::lib::Device>> dev = rpci::lib::Device::OpenFromEnv(0);
  if (!dev.ok()) {
    std::fprintf(stderr, "tenant_probe: %s\n", dev.status().ToString().c_str());
    return 1;
  }
  nlohmann::json summary = {{"device", (*dev)->device_id()}, {"dma_size", (*dev)->dma_size()}};
  absl::StatusOr<rpci::lib::DmaBuffer> all = (*dev)->AllocDma((*dev)->dma_size(), 4096);
  absl::Status st = all.status();
  nlohmann::json results = nlohmann::json::array();  // one entry per read or dma, in order
  for (int i = 1; i < argc && st.ok(); ++i) {
    nlohmann::json r = nlohmann::json::object();
    st = RunOp(**dev, *all, argv[i], &r);
    if (r.empty()) continue;
    r["op"] = argv[i];
    results.push_back(r);
  }
  summary["ok"] = st.ok();
  summary["results"] = results;
  summary["error"] = std::string(st.message());
  std::printf("%s\n", summary.dump().c_str());
  (*dev)->Close().IgnoreError();
  return st.ok() ? 0 : 1;
}
