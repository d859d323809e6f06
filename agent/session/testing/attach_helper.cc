// A workload process for session tests: attaches the session named on its
// command line (agent endpoint, session id, key in hex) through
// client::SessionClient, maps the first MAP_BYTES of DMA space from the
// device (pushed to it before every completion), prints "attached" and
// waits, holding the attach, until it is signalled (a test stops or kills
// it).
//
// It also refuses (exit 3) any setenv made on a thread other than its main
// one: libfabric's environment (fabric::PrepareEnvironment) must be set
// before the first attach starts its second thread, since setenv beside
// another thread's getenv (gRPC's start) is a data race that crashed a
// workload.
#include <dlfcn.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/numbers.h"
#include "client/session_client.h"

extern "C" int setenv(const char* name, const char* value, int overwrite) {
  using Setenv = int (*)(const char*, const char*, int);
  static const Setenv real = reinterpret_cast<Setenv>(dlsym(RTLD_NEXT, "setenv"));
  if (syscall(SYS_gettid) != getpid()) {
    static const char kMsg[] = "attach_helper: setenv on a thread other than the attaching one: ";
    (void)!write(2, kMsg, sizeof(kMsg) - 1);
    (void)!write(2, name, std::strlen(name));
    (void)!write(2, "\n", 1);
    _exit(3);
  }
  return real(name, value, overwrite);
}

int main(int argc, char** argv) {
  uint64_t map_bytes = 0;
  if (argc != 5 || !absl::SimpleAtoi(argv[4], &map_bytes)) {
    std::fprintf(stderr, "usage: attach_helper ENDPOINT SESSION_ID KEY_HEX MAP_BYTES\n");
    return 2;
  }
  rpci::client::SessionTicket ticket;
  ticket.endpoint = argv[1];
  absl::StatusOr<rpci::session::SessionId> id = rpci::session::SessionId::Parse(argv[2]);
  absl::StatusOr<rpci::session::SessionKey> key = rpci::session::SessionKey::FromHex(argv[3]);
  if (!id.ok() || !key.ok()) {
    std::fprintf(stderr, "attach_helper: bad session id or key\n");
    return 2;
  }
  ticket.session_id = *id;
  ticket.key = *key;
  rpci::client::ClientOptions options;
  options.heartbeat = absl::Hours(1);  // nothing of its own while it waits
  auto c = rpci::client::SessionClient::Attach(ticket, options);
  if (!c.ok()) {
    std::fprintf(stderr, "attach_helper: %s\n", c.status().ToString().c_str());
    return 1;
  }
  if (map_bytes > 0) {
    // The write's acknowledgement comes after the mapping is applied.
    absl::Status s = (*c)->MapFromDevice(0, map_bytes);
    if (s.ok()) s = (*c)->Write(0, 0x40, 4, 1);
    if (s.ok()) s = (*c)->Sync(absl::Seconds(10));
    if (!s.ok()) {
      std::fprintf(stderr, "attach_helper: map: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  std::printf("attached\n");
  std::fflush(stdout);
  while (true) pause();
}
