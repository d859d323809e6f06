#include "bench/device_roundtrip.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <tuple>

#include "absl/strings/str_format.h"
#include "agent/emu/emu_device.h"
#include "bench/fabric_pair.h"
#include "bench/stats.h"
#include "bench/tcp_baseline.h"

namespace rpci::bench {
namespace {

namespace emu = agent::emu;
using Clock = std::chrono::steady_clock;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// A driver for rpci-emu doing one thing: COPY of n bytes from kRoundTripSrc
// to kRoundTripSrc + kMaxRoundTrip, through a ring of two descriptors at DMA
// 0 (the ring needs two: a doorbell's tail must differ from the head).
class CopyJob {
 public:
  explicit CopyJob(client::SessionClient& c) : c_(c) {}

  // Resets and enables the device with the ring at 0 and completions raised.
  absl::Status Enable() {
    for (auto [reg, value] : {std::pair<uint64_t, uint64_t>{emu::kRegControl, emu::kControlReset},
                              {emu::kRegRingBaseLo, 0},
                              {emu::kRegRingBaseHi, 0},
                              {emu::kRegRingSize, kSlots},
                              {emu::kRegIntMask, emu::kIntCompletion | emu::kIntError},
                              {emu::kRegControl, emu::kControlEnable}}) {
      if (absl::Status s = c_.Write(0, reg, 4, value); !s.ok()) return s;
    }
    tail_ = 0;
    return c_.Sync(absl::Seconds(10));
  }

  // Both descriptors: COPY n bytes, interrupt when done; flushed to the
  // device once (the jobs reuse them). The destination mapped from-device,
  // or with `pull` read back by InvalidateDma after each completion.
  absl::Status Prepare(uint64_t n, bool pull) {
    pull_ = pull;
    if (n == 0 || n > kMaxRoundTrip) return absl::InvalidArgumentError("round trip size out of range");
    uint8_t* ring = c_.dma();
    std::memset(ring, 0, kSlots * emu::kDescSize);
    for (uint32_t slot = 0; slot < kSlots; ++slot) {
      uint8_t* d = ring + slot * emu::kDescSize;
      const uint32_t len = static_cast<uint32_t>(n);
      const uint64_t src = kRoundTripSrc, dst = kRoundTripSrc + kMaxRoundTrip;
      d[emu::kDescOpcode] = emu::kOpCopy;
      d[emu::kDescFlags] = emu::kFlagInterrupt;
      std::memcpy(d + emu::kDescLength, &len, 4);
      std::memcpy(d + emu::kDescSrc, &src, 8);
      std::memcpy(d + emu::kDescDst, &dst, 8);
    }
    if (absl::Status s = c_.FlushDma(0, kSlots * emu::kDescSize); !s.ok()) return s;
    for (uint64_t i = 0; i < n; ++i) c_.dma()[kRoundTripSrc + i] = static_cast<uint8_t>(i * 7 + n);
    return pull_ ? absl::OkStatus() : c_.MapFromDevice(kRoundTripSrc + kMaxRoundTrip, n);
  }

  // One round trip: FlushDma of the source, the doorbell, the completion
  // (the destination pushed back before it, or pulled after it). Times the
  // flush and the rest.
  // The source's first word carries `stamp`, checked in the copy after.
  absl::Status Run(uint64_t n, uint64_t stamp, double* flush_us, double* job_us) {
    std::memcpy(c_.dma() + kRoundTripSrc, &stamp, std::min<uint64_t>(n, 8));
    const uint32_t slot = tail_;
    tail_ = (tail_ + 1) % kSlots;
    const auto t0 = Clock::now();
    if (absl::Status s = c_.FlushDma(kRoundTripSrc, n); !s.ok()) return s;
    const auto t1 = Clock::now();
    if (absl::Status s = c_.Write(0, emu::kRegDoorbell, 4, tail_); !s.ok()) return s;
    absl::StatusOr<session::Completion> done = c_.WaitCompletion(absl::Seconds(10));
    if (!done.ok()) return done.status();
    if (pull_) {
      if (absl::Status s = c_.InvalidateDma(kRoundTripSrc + kMaxRoundTrip, n); !s.ok()) return s;
    }
    const auto t2 = Clock::now();
    if (done->vector != 0 || done->data != slot) {
      return absl::InternalError(absl::StrFormat("COPY in slot %u: vector %u, data %u", slot, done->vector, done->data));
    }
    if (std::memcmp(c_.dma() + kRoundTripSrc + kMaxRoundTrip, &stamp, std::min<uint64_t>(n, 8)) != 0) {
      return absl::DataLossError("the copy that came back is not the last one flushed");
    }
    *flush_us = Us(t1 - t0);
    *job_us = Us(t2 - t1);
    return absl::OkStatus();
  }

  absl::Status Finish(uint64_t n) {
    if (std::memcmp(c_.dma() + kRoundTripSrc, c_.dma() + kRoundTripSrc + kMaxRoundTrip, n) != 0) {
      return absl::DataLossError(absl::StrFormat("round trip of %u bytes: the copy differs from the source", n));
    }
    return pull_ ? absl::OkStatus() : c_.Unmap(kRoundTripSrc + kMaxRoundTrip);
  }

 private:
  static constexpr uint32_t kSlots = 2;
  client::SessionClient& c_;
  uint32_t tail_ = 0;
  bool pull_ = false;
};

// The fabric's floor: N bytes RMA-written from a to b with a message after
// them, answered by b the same way (WriteAndSend each way, as the session's
// flush + kick and the agent's push + event are; each waiter drives the
// progress itself), between two endpoints on separate fabrics.
class RmaFloor {
 public:
  ~RmaFloor() {
    stop_ = true;
    if (echo_.joinable()) echo_.join();
  }

  absl::Status Open(const fabric::FabricConfig& config) {
    absl::StatusOr<FabricPair> pair = OpenFabricPair(config);
    if (!pair.ok()) return pair.status();
    pair_ = *std::move(pair);
    for (auto [ep, buf, mr] : {std::tuple{pair_.a.get(), &a_buf_, &a_mr_}, std::tuple{pair_.b.get(), &b_buf_, &b_mr_}}) {
      buf->assign(kMaxRoundTrip, 1);
      auto r = ep->RegisterMemory(buf->data(), buf->size(), fabric::kRemoteWrite);
      if (!r.ok()) return r.status();
      *mr = *std::move(r);
    }
    echo_ = std::thread([this] { Echo(); });
    return absl::OkStatus();
  }

  // There and back, in us; negative on failure.
  double ThereAndBackUs(uint64_t n) {
    const auto t0 = Clock::now();
    const fabric::RemoteRegion to_b = b_mr_->remote();
    const std::string len(reinterpret_cast<const char*>(&n), sizeof(n));
    if (!pair_.a->WriteAndSend(pair_.a_to_b, {{a_mr_.get(), 0, n, to_b.address, to_b.key}}, len).ok() ||
        !pair_.a->Recv(absl::Seconds(10)).ok()) {
      return -1;
    }
    return Us(Clock::now() - t0);
  }

 private:
  void Echo() {
    const fabric::RemoteRegion to_a = a_mr_->remote();
    while (!stop_) {
      absl::StatusOr<std::string> m = pair_.b->Recv(absl::Milliseconds(100));
      if (!m.ok() || m->size() != sizeof(uint64_t)) continue;
      uint64_t n = 0;
      std::memcpy(&n, m->data(), sizeof(n));
      if (!pair_.b->WriteAndSend(pair_.b_to_a, {{b_mr_.get(), 0, n, to_a.address, to_a.key}}, *m).ok()) return;
    }
  }

  // Regions before the endpoints that registered them, endpoints before fabrics.
  FabricPair pair_;
  std::vector<uint8_t> a_buf_, b_buf_;
  std::unique_ptr<fabric::MemoryRegion> a_mr_, b_mr_;
  std::atomic<bool> stop_{false};
  std::thread echo_;
};

nlohmann::json Spread(const std::vector<double>& v, const std::string& prefix) {
  return {{prefix + "_p10", Percentile(v, 0.1)},
          {prefix + "_p50", Percentile(v, 0.5)},
          {prefix + "_p90", Percentile(v, 0.9)},
          {prefix + "_p99", Percentile(v, 0.99)}};
}

// TCP p50 / device p50 over each fifth of the (interleaved) samples.
std::vector<double> RatioByFifth(const std::vector<double>& dev, const std::vector<double>& tcp) {
  std::vector<double> out;
  const size_t n = std::min(dev.size(), tcp.size());
  for (size_t k = 0; k < 5 && n >= 5; ++k) {
    const auto lo = static_cast<std::ptrdiff_t>(n * k / 5), hi = static_cast<std::ptrdiff_t>(n * (k + 1) / 5);
    const double d = Percentile({dev.begin() + lo, dev.begin() + hi}, 0.5);
    out.push_back(Percentile({tcp.begin() + lo, tcp.begin() + hi}, 0.5) / d);
  }
  return out;
}

absl::StatusOr<nlohmann::json> OneSize(CopyJob& job, RmaFloor& floor, uint64_t n, int pairs, int warmup,
                                       bool pull) {
  if (absl::Status s = job.Prepare(n, pull); !s.ok()) return s;
  TcpEcho echo(n);
  std::vector<double> dev, flush, work, tcp, rma;
  for (int i = 0; i < warmup + pairs; ++i) {
    double f = 0, w = 0, t = 0, r = 0;
    // Rotate which goes first, so none always runs in another's wake.
    for (int k = 0; k < 3; ++k) {
      switch ((i + k) % 3) {
        case 0:
          if (absl::Status s = job.Run(n, i + 1, &f, &w); !s.ok()) return s;
          break;
        case 1:
          if ((t = echo.RequestResponseUs()) < 0) return absl::InternalError("TCP request/response failed");
          break;
        default:
          if ((r = floor.ThereAndBackUs(n)) < 0) return absl::InternalError("RMA floor: a write failed");
      }
    }
    if (i < warmup) continue;
    dev.push_back(f + w);
    flush.push_back(f);
    work.push_back(w);
    tcp.push_back(t);
    rma.push_back(r);
  }
  if (absl::Status s = job.Finish(n); !s.ok()) return s;
  nlohmann::json r = Spread(dev, "device_us");
  r.update(Spread(tcp, "tcp_us"));
  r["device_flush_us_p50"] = Percentile(flush, 0.5);
  r["device_job_us_p50"] = Percentile(work, 0.5);
  r["ratio_vs_tcp"] = r["tcp_us_p50"].get<double>() / r["device_us_p50"].get<double>();
  r["ratio_by_fifth"] = RatioByFifth(dev, tcp);
  r["rma_there_and_back_us_p50"] = Percentile(rma, 0.5);
  r["floor_vs_tcp"] = r["tcp_us_p50"].get<double>() / r["rma_there_and_back_us_p50"].get<double>();
  // What the session adds to the fabric's own there-and-back (1: nothing).
  r["floor_vs_device"] = r["rma_there_and_back_us_p50"].get<double>() / r["device_us_p50"].get<double>();
  r["pairs"] = pairs;
  return r;
}

}  // namespace

absl::StatusOr<nlohmann::json> DeviceRoundTrips(client::SessionClient& c, const RoundTripPlan& plan) {
  if (c.dma_size() < kRoundTripDmaSize) {
    return absl::InvalidArgumentError(absl::StrFormat("round trips need %u bytes of DMA space", kRoundTripDmaSize));
  }
  CopyJob job(c);
  if (absl::Status s = job.Enable(); !s.ok()) return s;
  RmaFloor floor;
  if (absl::Status s = floor.Open(plan.fabric); !s.ok()) return s;
  nlohmann::json out = nlohmann::json::object();
  for (auto [n, pairs] : plan.sizes) {
    absl::StatusOr<nlohmann::json> r = OneSize(job, floor, n, pairs, plan.warmup, /*pull=*/false);
    if (!r.ok()) return r.status();
    out[std::to_string(n)] = *r;
  }
  for (auto [n, pairs] : plan.invalidate_sizes) {
    absl::StatusOr<nlohmann::json> r = OneSize(job, floor, n, pairs, plan.warmup, /*pull=*/true);
    if (!r.ok()) return r.status();
    out["invalidate"][std::to_string(n)] = *r;
  }
  return out;
}

}  // namespace rpci::bench
