// A session whose fabric endpoint cannot open because the agent's fabric port
// range is full. Its own binary: libfabric's tcp provider reads the range
// (FI_TCP_PORT_LOW_RANGE/HIGH_RANGE) once per process, so the test sets it
// before anything in the process touches libfabric.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "agent/session/session_server.h"
#include "agent/session/testing/test_device.h"
#include "client/control_client.h"
#include "client/session_client.h"
#include "common/log.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

// A TCP socket listening on 127.0.0.1:`port` (0: any); -1 when it is taken.
int Listen(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 1) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

int PortOf(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

// kPorts adjacent free ports, held (listening) by this test: the fabric port
// range, full until the test closes them. The client in this process takes
// its ports from the same range, so the range is wider than one session's.
constexpr int kPorts = 2;
struct HeldRange {
  int fds[kPorts] = {-1, -1};
  int low = 0;
  void Release() {
    for (int& fd : fds) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
  ~HeldRange() { Release(); }
};

bool HoldAdjacentPorts(HeldRange* r) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    r->fds[0] = Listen(0);
    if (r->fds[0] < 0) continue;
    r->low = PortOf(r->fds[0]);
    int held = 1;
    while (held < kPorts && r->low + held <= 65535 && (r->fds[held] = Listen(r->low + held)) >= 0) ++held;
    if (held == kPorts) return true;
    r->Release();
  }
  return false;
}

TEST(SessionPortsTest, AnEndpointThatCannotOpenRefusesItsAttachAndTheNextSessionWorksOnceAPortIsFree) {
  HeldRange range;
  ASSERT_TRUE(HoldAdjacentPorts(&range));
  // Before the first Fabric::Open of the process (the server's Create).
  setenv("FI_TCP_PORT_LOW_RANGE", std::to_string(range.low).c_str(), 1);
  setenv("FI_TCP_PORT_HIGH_RANGE", std::to_string(range.low + kPorts - 1).c_str(), 1);
  std::ostringstream log;
  Logger::SetSink(&log);
  auto restore_log = absl::MakeCleanup([] { Logger::SetSink(&std::cerr); });

  MetricsRegistry metrics;
  GrantTable grants;
  grants.Upsert({"g1", "dev0", "node-a", "secret-token", absl::InfiniteFuture()});
  testing::TestDevice device;
  SessionServerOptions opts;
  opts.metrics = &metrics;
  auto server = SessionServer::Create(opts, &grants, {{"dev0", &device}});
  ASSERT_TRUE(server.ok()) << server.status();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(server->get());
  auto grpc_server = builder.BuildAndStart();
  ASSERT_NE(grpc_server, nullptr);
  auto stop = absl::MakeCleanup([&] {
    grpc_server->Shutdown(std::chrono::system_clock::now());
    (*server)->Stop();
  });
  const std::string endpoint = "127.0.0.1:" + std::to_string(port);

  // The range is full when the session is reserved: its endpoint (opened by
  // its worker right after the reservation) does not open, which is logged.
  auto ticket = client::ControlClient().Reserve(endpoint, {"g1", "secret-token", "node-a"});
  ASSERT_TRUE(ticket.ok()) << ticket.status();
  for (int i = 0; i < 200 && log.str().find("session fabric did not open") == std::string::npos; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_NE(log.str().find("session fabric did not open"), std::string::npos) << log.str();
  EXPECT_FALSE((*server)->fabric_address(ticket->session_id).ok());
  // The workload's attach (its own endpoint opens once ports are free again)
  // is refused with the reason, and the agent goes on.
  range.Release();
  auto refused = client::SessionClient::Attach(*ticket, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_NE(refused.status().message().find("port range"), std::string::npos) << refused.status();

  // Nothing of it stays: the plugin's close ends it and frees the device.
  ASSERT_TRUE(client::ControlClient().Close(*ticket).ok());
  EXPECT_EQ((*server)->live_sessions(), 0u);

  // With the ports free again, the next session on the device works.
  auto next = client::ControlClient().Reserve(endpoint, {"g1", "secret-token", "node-a"});
  ASSERT_TRUE(next.ok()) << next.status();
  // The agent's endpoint first, then the client's: two endpoints binding in
  // one small range at the same moment may pick the same port (libfabric's
  // tcp provider), which this test is not about.
  for (int i = 0; i < 200 && !(*server)->fabric_address(next->session_id).ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE((*server)->fabric_address(next->session_id).ok());
  auto c = client::SessionClient::Attach(*next, {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Write(0, 0x10, 4, 0x77).ok());
  ASSERT_TRUE((*c)->Sync(absl::Seconds(5)).ok());
  uint32_t applied = 0;
  ASSERT_TRUE(device.ReadBar(0, 0x10, 4, reinterpret_cast<uint8_t*>(&applied)).ok());
  EXPECT_EQ(applied, 0x77u);
  ASSERT_TRUE((*c)->Close().ok());
  ASSERT_TRUE(client::ControlClient().Close(*next).ok());
}

}  // namespace
}  // namespace rpci::agent
