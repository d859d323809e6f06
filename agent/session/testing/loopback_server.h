#ifndef RPCI_AGENT_SESSION_TESTING_LOOPBACK_SERVER_H_
#define RPCI_AGENT_SESSION_TESTING_LOOPBACK_SERVER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/session/session_server.h"
#include "grpcpp/grpcpp.h"

namespace rpci::agent::testing {

// A SessionServer serving SessionControl over insecure gRPC on 127.0.0.1:
// the agent side of a session as tests reach it.
class LoopbackSessionServer {
 public:
  // Creates the server and serves it on `port` (0: a free one; an agent
  // restarted on the same port passes its predecessor's port()).
  static absl::StatusOr<std::unique_ptr<LoopbackSessionServer>> Start(SessionServerOptions options,
                                                                      GrantTable* grants,
                                                                      std::map<std::string, SessionDevice*> devices,
                                                                      int port = 0);
  // Stops serving, then stops the server (its checkpoint stays).
  ~LoopbackSessionServer();

  SessionServer& server() { return *server_; }
  int port() const { return port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  LoopbackSessionServer() = default;
  std::unique_ptr<SessionServer> server_;
  std::unique_ptr<grpc::Server> grpc_;
  int port_ = 0;
};

}  // namespace rpci::agent::testing

#endif  // RPCI_AGENT_SESSION_TESTING_LOOPBACK_SERVER_H_
