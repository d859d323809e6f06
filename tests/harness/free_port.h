#ifndef RPCI_TESTS_HARNESS_FREE_PORT_H_
#define RPCI_TESTS_HARNESS_FREE_PORT_H_

namespace rpci::testing {

// A TCP port on 127.0.0.1 that nothing listens on now (bound to port 0, read
// back, closed), for a daemon that must be told its port up front; 0 when
// none could be had. Another process may take it before the daemon does.
int FreeLoopbackPort();

}  // namespace rpci::testing

#endif  // RPCI_TESTS_HARNESS_FREE_PORT_H_
