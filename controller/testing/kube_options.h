#ifndef RPCI_CONTROLLER_TESTING_KUBE_OPTIONS_H_
#define RPCI_CONTROLLER_TESTING_KUBE_OPTIONS_H_

#include <string>

#include "controller/controller_app.h"

namespace rpci::controller::testing {

// Options of a controller in a test: the kube store on the API server at
// `server` (objects of namespace `ns`), gRPC and HTTP on ephemeral loopback
// ports. TLS, leader election and timings stay as the caller sets them.
inline ControllerOptions KubeStoreOptions(const std::string& server, const std::string& ns = "default") {
  ControllerOptions o;
  o.store = "kube";
  kube::KubeConfig kc;
  kc.server = server;
  kc.ns = ns;
  o.kube_config = kc;
  o.listen = "127.0.0.1:0";
  o.http_listen = "127.0.0.1:0";
  return o;
}

}  // namespace rpci::controller::testing

#endif  // RPCI_CONTROLLER_TESTING_KUBE_OPTIONS_H_
