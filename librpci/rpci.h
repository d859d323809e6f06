/* librpci C API: use a PCIe device attached by rpci from C (or any language
 * with a C FFI). A thin layer over the C++ API in librpci/device.h; the
 * environment contract is in docs/librpci.md.
 *
 * Every function returning int returns RPCI_OK (0) or a negative rpci_error;
 * rpci_strerror() names the code and rpci_last_error() gives the detailed
 * message of the calling thread's last failure. */
#ifndef RPCI_LIBRPCI_RPCI_H_
#define RPCI_LIBRPCI_RPCI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Negated absl/gRPC status codes. */
enum rpci_error {
  RPCI_OK = 0,
  RPCI_ECANCELLED = -1,
  RPCI_EUNKNOWN = -2,
  RPCI_EINVAL = -3,             /* bad argument (null pointer, misaligned offset, bad size) */
  RPCI_ETIMEDOUT = -4,          /* deadline exceeded (e.g. no completion in time) */
  RPCI_ENOTFOUND = -5,          /* no such device / BAR / DMA buffer, variable unset */
  RPCI_EEXIST = -6,
  RPCI_EPERM = -7,              /* the agent refused an access (read-only BAR ...) */
  RPCI_ENOSPC = -8,             /* DMA space exhausted */
  RPCI_ESTATE = -9,             /* session closed or torn down */
  RPCI_EABORTED = -10,
  RPCI_ERANGE = -11,            /* offset outside a BAR or buffer */
  RPCI_ENOTSUP = -12,
  RPCI_EINTERNAL = -13,
  RPCI_EUNAVAILABLE = -14,      /* agent unreachable */
  RPCI_EDATALOSS = -15,
  RPCI_EAUTH = -16              /* wrong session key */
};

typedef struct rpci_device rpci_device;

typedef struct rpci_dma_buf {
  uint64_t device_addr; /* address to program into the device */
  void* host;           /* the compute-side copy */
  uint64_t size;
} rpci_dma_buf;

typedef struct rpci_completion {
  uint64_t seq;
  uint16_t vector; /* emulated MSI-X vector */
  uint32_t cause;
  uint64_t data;
} rpci_completion;

/* Number of devices in the environment (RPCI_DEVICE_COUNT / RPCI_DEVICE_IDS). */
int rpci_device_count(int* count);
/* Attaches device `index` described by the environment. */
int rpci_open_env(int index, rpci_device** dev);
/* Attaches a session given explicitly. key_hex: 64 hex digits. provider and
 * fabric_node may be NULL (tcp;ofi_rxm; the route's source address). */
int rpci_open(const char* endpoint, const char* session_id, const char* key_hex, const char* provider,
              const char* fabric_node, rpci_device** dev);
/* Ends the session and frees `dev` (NULL is a no-op). Returns the close status. */
int rpci_close(rpci_device* dev);

/* The read-only mirror of BAR `bar`. */
int rpci_bar_map(rpci_device* dev, uint16_t bar, const volatile void** base, uint64_t* size);
/* Ordered register access (a read never passes an earlier write). */
int rpci_read32(rpci_device* dev, uint16_t bar, uint64_t offset, uint32_t* value);
int rpci_read64(rpci_device* dev, uint16_t bar, uint64_t offset, uint64_t* value);
int rpci_write32(rpci_device* dev, uint16_t bar, uint64_t offset, uint32_t value);
int rpci_write64(rpci_device* dev, uint16_t bar, uint64_t offset, uint64_t value);
/* Sends posted writes now (without waiting for them to be applied). */
int rpci_flush(rpci_device* dev);
/* A register write sent at once. */
int rpci_doorbell(rpci_device* dev, uint16_t bar, uint64_t offset, uint64_t value);
int rpci_doorbell32(rpci_device* dev, uint16_t bar, uint64_t offset, uint32_t value);
/* Applies posted writes and refreshes the BAR mirrors. */
int rpci_refresh(rpci_device* dev, int timeout_ms);

/* DMA buffers in the session's DMA space; align is a power of two. */
int rpci_dma_alloc(rpci_device* dev, uint64_t size, uint64_t align, rpci_dma_buf* buf);
int rpci_dma_free(rpci_device* dev, const rpci_dma_buf* buf);
/* Host copy -> device side for [offset, offset+len) of the buffer. */
int rpci_dma_flush(rpci_device* dev, const rpci_dma_buf* buf, uint64_t offset, uint64_t len);
/* Device side -> host copy, now. */
int rpci_dma_sync(rpci_device* dev, const rpci_dma_buf* buf, uint64_t offset, uint64_t len);
/* The device writes this buffer: it is in the host copy before each completion. */
int rpci_dma_map_from_device(rpci_device* dev, const rpci_dma_buf* buf);

/* Next completion; RPCI_ETIMEDOUT after timeout_ms. */
int rpci_wait_completion(rpci_device* dev, int timeout_ms, rpci_completion* out);

/* A static name for an error code ("RPCI_ENOSPC: DMA space exhausted"). */
const char* rpci_strerror(int err);
/* The calling thread's last error message ("" if none); valid until its next call. */
const char* rpci_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* RPCI_LIBRPCI_RPCI_H_ */
