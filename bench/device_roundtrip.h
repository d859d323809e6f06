#ifndef RPCI_BENCH_DEVICE_ROUNDTRIP_H_
#define RPCI_BENCH_DEVICE_ROUNDTRIP_H_

// The device round trip (issue 16): on rpci-emu, FlushDma of N bytes, a COPY
// job, the result back on the client (MapFromDevice: the agent pushes it
// before the completion), against a TCP request/response of the same N bytes
// each way over one warm loopback connection, and against the fabric's own
// floor for moving the bytes there and back: one RMA write of N bytes each
// way between two endpoints with the session's FabricConfig (no doorbell, no
// device). The three kinds of sample are taken interleaved (rotating which
// goes first), so load and drift hit all alike; medians are compared.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "client/session_client.h"
#include "common/fabric/fabric.h"
#include "nlohmann/json.hpp"

namespace rpci::bench {

// DMA layout the round trip needs on the emu device: the descriptor ring at
// 0, the source at kRoundTripSrc, the destination kMaxRoundTrip after it.
inline constexpr uint64_t kRoundTripSrc = 4096;
inline constexpr uint64_t kMaxRoundTrip = uint64_t{16} << 20;  // rpci-emu's largest transfer
inline constexpr uint64_t kRoundTripDmaSize = kRoundTripSrc + 2 * kMaxRoundTrip;

struct RoundTripPlan {
  // (bytes, measured pairs) per size, each size after `warmup` unmeasured pairs.
  std::vector<std::pair<uint64_t, int>> sizes;
  // The same with the result pulled by InvalidateDma after the completion
  // instead of pushed before it (MapFromDevice); under "invalidate".
  std::vector<std::pair<uint64_t, int>> invalidate_sizes;
  int warmup = 5;
  // Provider and endpoint settings of the RMA floor (the session's).
  fabric::FabricConfig fabric = fabric::LoopbackConfig();
};

// Runs the plan on `c`, a session on an rpci-emu device of at least
// kRoundTripDmaSize bytes of DMA space (it resets and enables the device).
// Per size: device and TCP p10/p50/p90/p99 in us, the device time split into
// FlushDma and doorbell-to-completion, `ratio_vs_tcp` (TCP p50 / device p50:
// >= 1 is as fast as TCP) and the same ratio over each fifth of the samples
// (`ratio_by_fifth`: how much it moves within the run), the RMA floor's
// p50 (`rma_there_and_back_us_p50`), `floor_vs_tcp` (TCP p50 / floor p50)
// and `floor_vs_device` (floor p50 / device p50: 1 when the session adds
// nothing to the fabric's own cost); the InvalidateDma variant's sizes under
// "invalidate". DATA_LOSS if the
// bytes that came back are not the bytes sent.
absl::StatusOr<nlohmann::json> DeviceRoundTrips(client::SessionClient& c, const RoundTripPlan& plan);

}  // namespace rpci::bench

#endif  // RPCI_BENCH_DEVICE_ROUNDTRIP_H_
