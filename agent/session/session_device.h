#ifndef RPCI_AGENT_SESSION_SESSION_DEVICE_H_
#define RPCI_AGENT_SESSION_SESSION_DEVICE_H_

// The one device interface of the agent. Every backend (emu, vfio)
// implements it directly; the session server drives it. Calls for one device
// are serialized by the session server (one session owns a device at a time),
// except where a method says it is thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace rpci::agent {

class SessionDevice {
 public:
  virtual ~SessionDevice() = default;

  // One BAR window as sessions see it.
  struct Bar {
    uint16_t index = 0;
    uint64_t size = 0;
    bool writable = true;  // whether a session may write registers in it
  };
  // One interrupt (an MSI/MSI-X message or its emulation).
  struct Interrupt {
    uint16_t vector = 0;
    uint32_t cause = 0;  // device-specific cause bits (rpci-emu: the kInt* bit)
    uint64_t data = 0;   // device-specific (rpci-emu: the descriptor's ring index)
  };

  // "emu", "vfio" ...; used in logs, metrics and ExportedDevice.backend.
  virtual std::string kind() const = 0;
  // The BARs, in index order. Stable for the device's lifetime.
  virtual std::vector<Bar> Bars() const = 0;

  // Applies one register write (width 4 or 8) with its side effects (a
  // doorbell runs the work). NOT_FOUND for a BAR the device does not have,
  // INVALID_ARGUMENT for a bad width, an unaligned offset or a 32-bit write
  // whose value does not fit, OUT_OF_RANGE when the access leaves the BAR.
  virtual absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) = 0;

  // Copies `len` bytes of the BAR's current contents at `offset` into `out`
  // (in whole 32-bit registers: offset and len multiples of 4). Errors as
  // WriteRegister; a failing read copies nothing.
  virtual absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) = 0;

  // The DMA space the device works on: device addresses are offsets into it.
  // Every device has one (a backend whose device cannot DMA gives a local
  // buffer the device never touches). Stable for the device's lifetime.
  virtual uint8_t* dma_space() = 0;
  virtual uint64_t dma_size() const = 0;

  // Interrupts raised since the last call, in order.
  virtual std::vector<Interrupt> TakeInterrupts() = 0;

  // A file descriptor that is readable while the device has raised
  // interrupts TakeInterrupts has not taken yet (a device that finishes work
  // on its own, e.g. a real one's MSI), or -1 when interrupts are only raised
  // while a register write is applied. The session server waits on it and
  // pushes completions without waiting for the client's next kick.
  virtual int interrupt_fd() { return -1; }

  // OK while the device can serve; otherwise why not (the function is gone,
  // its last reset failed, ...). Reported to the controller, and so to the
  // kubelet, as the device's health. Thread-safe.
  virtual absl::Status Health() const { return absl::OkStatus(); }

  // Whether the device's state outlives the agent process. Real devices do
  // not (the kernel resets a VFIO device when the agent's descriptors close)
  // and rpci-emu starts fresh; a session that had built device state is then
  // not resumed after an agent restart (docs/sessions.md, Resilience).
  virtual bool keeps_state_across_agent_restart() const { return false; }

  // Makes the device safe for the next tenant: the device is reset to its
  // power-on register state, pending interrupts are dropped and the whole DMA
  // space is zeroed. OK means clean; an error (naming the device and what
  // failed) means the device must not be granted again until an operator
  // looks at it. Called by the session server at every teardown.
  virtual absl::Status Reset() = 0;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_SESSION_SESSION_DEVICE_H_
