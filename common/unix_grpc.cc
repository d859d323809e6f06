#include "common/unix_grpc.h"

#include <unistd.h>

#include "common/grpc_util.h"

namespace rpci {

std::unique_ptr<grpc::Server> ServeUnix(const std::string& socket, const std::vector<grpc::Service*>& services) {
  unlink(socket.c_str());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
  for (grpc::Service* s : services) builder.RegisterService(s);
  return builder.BuildAndStart();
}

void StopServer(std::unique_ptr<grpc::Server>& server, absl::Duration grace) {
  if (server) server->Shutdown(In(grace));
  server.reset();
}

std::shared_ptr<grpc::Channel> UnixChannel(const std::string& path) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  return grpc::CreateCustomChannel("unix:" + path, grpc::InsecureChannelCredentials(), args);
}

}  // namespace rpci
