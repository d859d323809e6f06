#ifndef RPCI_LIBRPCI_DEVICE_H_
#define RPCI_LIBRPCI_DEVICE_H_

// librpci: what a workload links to use a device attached by rpci. A Device
// is one attached memory-mirroring session (docs/sessions.md); the plugin
// describes it in the container's environment (docs/librpci.md).
//
//   auto dev = rpci::lib::Device::OpenFromEnv(0);
//   auto buf = (*dev)->AllocDma(4096);
//   ... fill buf->host ...; (*dev)->FlushToDevice(*buf, 0, 4096);
//   (*dev)->Write64(0, kSrcReg, buf->device_addr);
//   (*dev)->RingDoorbell(0, kDoorbellReg, 1);
//   auto done = (*dev)->WaitCompletion(absl::Seconds(1));

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/session_client.h"
#include "librpci/dma_allocator.h"

namespace rpci::lib {

// Where environment variables come from: the process environment by
// default; tests pass a map.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnv();
EnvLookup MapEnv(std::map<std::string, std::string> vars);

// Everything needed to attach one device's session.
struct DeviceConfig {
  std::string device_id;
  std::string endpoint;    // agent SessionControl gRPC target, host:port
  session::SessionId session_id;
  session::SessionKey key;
  std::string fabric_provider = "tcp;ofi_rxm";
  // Local address the fabric endpoint binds; empty = the address this host
  // uses to reach the endpoint's host.
  std::string fabric_node;
  // PEM CA bundle the agent's TLS certificate is verified against (the
  // workload presents no certificate; the session key authorizes it); empty =
  // plaintext gRPC.
  std::string ca_file;
  // The session's shape as the plugin's reservation named it (RPCI_<i>_BARS,
  // RPCI_<i>_DMA_SIZE). Given, the attach goes straight to the session's
  // challenge; empty (both), the attach first asks the agent for it (a
  // challenge and an OpenSession more, 2.5-3.3 ms of a fresh process's
  // first attach: docs/benchmarks.md). A shape that is not the session's is
  // refused by the agent at attach.
  std::vector<client::BarMirror> bars;
  uint64_t dma_size = 0;
};

// Number of devices the plugin attached (RPCI_DEVICE_COUNT, else the entries
// of RPCI_DEVICE_IDS). NOT_FOUND when the environment names none.
absl::StatusOr<int> DeviceCountFromEnv(const EnvLookup& env = ProcessEnv());
// The config of device `index` from the environment (reads the key file).
// NOT_FOUND when a required variable is missing, INVALID_ARGUMENT when one is
// malformed, naming the variable.
absl::StatusOr<DeviceConfig> ConfigFromEnv(int index, const EnvLookup& env = ProcessEnv());

// A DMA buffer inside the session's DMA space.
struct DmaBuffer {
  uint64_t device_addr = 0;  // what the device is told (offset in DMA space)
  uint8_t* host = nullptr;   // the compute-side copy
  uint64_t size = 0;
};

// A BAR mirror: reads of it see the device as of the last completion or
// Refresh (docs/sessions.md, consistency model).
struct BarMapping {
  uint16_t bar = 0;
  const volatile uint8_t* base = nullptr;
  uint64_t size = 0;
};

struct Completion {
  uint64_t seq = 0;
  uint16_t vector = 0;
  uint32_t cause = 0;
  uint64_t data = 0;
};

// One attached device. Thread-safe.
class Device {
 public:
  static absl::StatusOr<std::unique_ptr<Device>> Open(const DeviceConfig& config,
                                                      const client::ClientOptions& options = {});
  static absl::StatusOr<std::unique_ptr<Device>> OpenFromEnv(int index = 0, const EnvLookup& env = ProcessEnv());
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const std::string& device_id() const { return config_.device_id; }
  session::SessionId session_id() const { return config_.session_id; }
  std::vector<client::BarMirror> bars() const;
  uint64_t dma_size() const;

  // The read-only mirror of `bar`. NOT_FOUND for a BAR the device lacks.
  absl::StatusOr<BarMapping> MapBar(uint16_t bar);

  // Register reads with PCIe ordering: a read never passes a posted write,
  // so when writes were posted since the mirror was last brought up to date
  // the read first applies them and refreshes the mirror (one round trip).
  // OUT_OF_RANGE outside the BAR, INVALID_ARGUMENT when misaligned.
  absl::StatusOr<uint32_t> Read32(uint16_t bar, uint64_t offset);
  absl::StatusOr<uint64_t> Read64(uint16_t bar, uint64_t offset);
  // Posted register writes, applied in program order.
  absl::Status Write32(uint16_t bar, uint64_t offset, uint32_t value);
  absl::Status Write64(uint16_t bar, uint64_t offset, uint64_t value);
  // Sends posted writes to the device side now (without waiting for them).
  absl::Status Flush();
  // A register write that is sent at once (doorbells start device work).
  absl::Status RingDoorbell(uint16_t bar, uint64_t offset, uint64_t value);
  // The same for a 32-bit doorbell register.
  absl::Status RingDoorbell32(uint16_t bar, uint64_t offset, uint32_t value);
  // Applies posted writes and pulls the device's BARs into the mirrors.
  absl::Status Refresh(absl::Duration timeout);

  // DMA buffers. `align` is a power of two. RESOURCE_EXHAUSTED when the DMA
  // space has no room; NOT_FOUND when freeing something not allocated.
  absl::StatusOr<DmaBuffer> AllocDma(uint64_t size, uint64_t align = 64);
  absl::Status FreeDma(const DmaBuffer& buffer);
  // Copies [offset, offset+len) of the buffer to the device side; do this
  // before the doorbell that makes the device read it.
  absl::Status FlushToDevice(const DmaBuffer& buffer, uint64_t offset, uint64_t len);
  // Pulls [offset, offset+len) of the buffer from the device side now (after
  // every posted write is applied).
  absl::Status SyncFromDevice(const DmaBuffer& buffer, uint64_t offset, uint64_t len);
  // The device writes this buffer: its contents are pushed to the host copy
  // before each completion is delivered (until FreeDma). A push lands when
  // the agent makes it, which may be after the device's own write is
  // already visible to SyncFromDevice: the host writes a mapped buffer only
  // once WaitCompletion has returned every completion the device raised, or
  // the push overwrites what it wrote (a driver that polls instead of
  // waiting for completions uses SyncFromDevice and does not map).
  absl::Status MapFromDevice(const DmaBuffer& buffer);

  // Next completion (emulated MSI-X), or DEADLINE_EXCEEDED after `timeout`.
  absl::StatusOr<Completion> WaitCompletion(absl::Duration timeout);

  // Ends the session on the agent. Later calls fail with FAILED_PRECONDITION.
  absl::Status Close();

  // Reconnects, replays and refusals so far.
  client::ClientStats stats() const;

 private:
  Device(DeviceConfig config, std::unique_ptr<client::SessionClient> client);
  absl::StatusOr<uint64_t> ReadOrdered(uint16_t bar, uint64_t offset, uint8_t width);
  absl::Status Post(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value);
  absl::Status CheckBuffer(const DmaBuffer& buffer, uint64_t offset, uint64_t len) const;

  const DeviceConfig config_;
  std::unique_ptr<client::SessionClient> client_;
  mutable std::mutex mu_;
  DmaAllocator dma_;
  bool writes_posted_ = false;
  std::map<uint64_t, bool> from_device_;  // offsets of buffers mapped from device
};

}  // namespace rpci::lib

#endif  // RPCI_LIBRPCI_DEVICE_H_
