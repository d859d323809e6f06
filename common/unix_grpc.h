#ifndef RPCI_COMMON_UNIX_GRPC_H_
#define RPCI_COMMON_UNIX_GRPC_H_

// gRPC on unix sockets, the kubelet's way to reach its plugins (and theirs to
// reach it): insecure credentials, access guarded by the directory's
// permissions. One place for the server plumbing both kubelet integrations
// (device plugin, DRA) and the fake kubelets share.

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace rpci {

// A server on `socket` with `services` (which must outlive it), or null when
// it cannot listen. A stale file at the path (a previous run's socket) is
// removed first; gRPC removes the path itself when the listener shuts down.
std::unique_ptr<grpc::Server> ServeUnix(const std::string& socket, const std::vector<grpc::Service*>& services);

// Shuts `server` down, cancelling calls still running after `grace`, and
// destroys it (so its services may go next). Null is fine.
void StopServer(std::unique_ptr<grpc::Server>& server, absl::Duration grace);

// A channel to a unix socket that notices a (re)appearing peer quickly
// (reconnect backoff 50-500 ms).
std::shared_ptr<grpc::Channel> UnixChannel(const std::string& path);

}  // namespace rpci

#endif  // RPCI_COMMON_UNIX_GRPC_H_
