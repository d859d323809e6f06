#include "common/fabric/kernel_symbols.h"

#include <dlfcn.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace rpci::fabric {
namespace {

thread_local int hidden_depth = 0;
std::atomic<uint64_t> refused{0};

}  // namespace

HiddenKernelSymbols::HiddenKernelSymbols() { ++hidden_depth; }
HiddenKernelSymbols::~HiddenKernelSymbols() { --hidden_depth; }

uint64_t KernelSymbolOpensRefused() { return refused.load(); }

}  // namespace rpci::fabric

// The process's fopen (kernel_symbols.h): the C library's, except for
// /proc/kallsyms on a thread that hides it.
extern "C" FILE* fopen(const char* path, const char* mode) {
  using Fopen = FILE* (*)(const char*, const char*);
  static const Fopen next = reinterpret_cast<Fopen>(dlsym(RTLD_NEXT, "fopen"));
  if (rpci::fabric::hidden_depth > 0 && path != nullptr && std::strcmp(path, "/proc/kallsyms") == 0) {
    rpci::fabric::refused.fetch_add(1);
    errno = ENOENT;
    return nullptr;
  }
  if (next == nullptr) {
    errno = ENOSYS;
    return nullptr;
  }
  return next(path, mode);
}
