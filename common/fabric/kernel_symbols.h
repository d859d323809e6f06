#ifndef RPCI_COMMON_FABRIC_KERNEL_SYMBOLS_H_
#define RPCI_COMMON_FABRIC_KERNEL_SYMBOLS_H_

// libfabric 1.17 initialises every built-in provider at a process's first
// fi_getinfo, whatever the hints or FI_PROVIDER ask for, and the verbs
// provider's initialisation (vrb_read_params) reads /proc/kallsyms from start
// to end twice, unconditionally: once for a peer-memory client
// (ib_register_peer_memory_client), once for dma-buf registration
// (ib_umem_dmabuf_get). Both only decide how device memory (a GPU's) may be
// registered. On the 2-core test machine the two reads took 90-700 ms of a
// fresh process's first attach (docs/benchmarks.md, "Attach"); no environment
// variable or hint skips them.
//
// While a HiddenKernelSymbols lives on a thread, fopen("/proc/kallsyms") on
// that thread fails with ENOENT, which the verbs provider reads as "neither
// is supported". This library defines fopen for the process for that: every
// other call (other paths, other threads, no guard) goes to the C library's
// fopen unchanged.
#include <cstdint>

namespace rpci::fabric {

class HiddenKernelSymbols {
 public:
  HiddenKernelSymbols();
  ~HiddenKernelSymbols();
  HiddenKernelSymbols(const HiddenKernelSymbols&) = delete;
  HiddenKernelSymbols& operator=(const HiddenKernelSymbols&) = delete;
};

// Opens of /proc/kallsyms refused so far in this process.
uint64_t KernelSymbolOpensRefused();

}  // namespace rpci::fabric

#endif  // RPCI_COMMON_FABRIC_KERNEL_SYMBOLS_H_
