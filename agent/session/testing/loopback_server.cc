#include "agent/session/testing/loopback_server.h"

#include <chrono>
#include <utility>

namespace rpci::agent::testing {

absl::StatusOr<std::unique_ptr<LoopbackSessionServer>> LoopbackSessionServer::Start(
    SessionServerOptions options, GrantTable* grants, std::map<std::string, SessionDevice*> devices, int port) {
  std::unique_ptr<LoopbackSessionServer> s(new LoopbackSessionServer());
  absl::StatusOr<std::unique_ptr<SessionServer>> server = SessionServer::Create(options, grants, std::move(devices));
  if (!server.ok()) return server.status();
  s->server_ = *std::move(server);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(), &s->port_);
  builder.RegisterService(s->server_.get());
  s->grpc_ = builder.BuildAndStart();
  if (s->grpc_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError("loopback session server: gRPC did not start on port " + std::to_string(port));
  }
  return s;
}

LoopbackSessionServer::~LoopbackSessionServer() {
  if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now());
  if (server_) server_->Stop();
}

}  // namespace rpci::agent::testing
