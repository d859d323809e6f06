#ifndef RPCI_AGENT_SESSION_SESSION_DEVICE_H_
#define RPCI_AGENT_SESSION_SESSION_DEVICE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace rpci::agent {

// What a memory-mirroring session needs of a device: its BAR windows, a DMA
// space the device works on, register writes applied with their side effects
// and the interrupts it raises. Device backends (emu, sysfs BAR) are adapted to
// this. Calls for one device are serialized by the session server.
class SessionDevice {
 public:
  virtual ~SessionDevice() = default;

  struct Bar {
    uint16_t index = 0;
    uint64_t size = 0;
    bool writable = true;  // whether the session may write registers in it
  };
  virtual std::vector<Bar> Bars() const = 0;

  // Applies one register write (4 or 8 bytes). REQUIRES: in bounds of the BAR
  // (the session server checks before calling).
  virtual absl::Status WriteRegister(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) = 0;

  // Copies `len` bytes of the BAR's current contents at `offset` into `out`.
  virtual absl::Status ReadBar(uint16_t bar, uint64_t offset, uint64_t len, uint8_t* out) = 0;

  // The device's DMA space: device addresses are offsets into it. Stable for
  // the device's lifetime.
  virtual uint8_t* dma_space() = 0;
  virtual uint64_t dma_size() const = 0;

  struct Interrupt {
    uint16_t vector = 0;
    uint32_t cause = 0;
    uint64_t data = 0;
  };
  // Interrupts raised since the last call, in order.
  virtual std::vector<Interrupt> TakeInterrupts() = 0;

  // A file descriptor that is readable while the device has raised
  // interrupts TakeInterrupts has not taken yet (a device that finishes work
  // on its own, e.g. a real one's MSI), or -1 when interrupts are only raised
  // while a register write is applied. The session server waits on it and
  // pushes completions without waiting for the client's next kick.
  virtual int interrupt_fd() { return -1; }
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_SESSION_SESSION_DEVICE_H_
