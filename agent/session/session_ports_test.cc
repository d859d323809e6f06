// Session fabric endpoints and the agent's fabric port range: endpoints that
// race for one port, and a session whose endpoint could not open because the
// range was full. Its own binary: libfabric's tcp provider reads the range
// (FI_TCP_PORT_LOW_RANGE/HIGH_RANGE) once per process, so the first test sets
// it before anything in the process touches libfabric, and every test here
// shares it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
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
// SO_REUSEADDR like libfabric's own: a port whose connections linger in
// TIME_WAIT is still one libfabric could take, so the test takes it too.
int Listen(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
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

// The process's fabric port range: kPorts adjacent ports, found free once and
// handed to libfabric (before its first use). A test fills the range by
// listening on every port of it (a port someone else holds is full anyway)
// and frees it port by port.
constexpr int kPorts = 20;
constexpr int kSessions = 8;  // the agent's and the clients' endpoints fit: 2 x 8 <= 20

class PortRange {
 public:
  static PortRange& Get() {
    static PortRange* range = new PortRange();
    return *range;
  }
  bool found() const { return low_ > 0; }
  void Fill() {
    for (int i = 0; i < kPorts; ++i) {
      if (fds_[i] < 0) fds_[i] = Listen(low_ + i);
    }
  }
  void Free(int i) {
    if (fds_[i] >= 0) close(fds_[i]);
    fds_[i] = -1;
  }
  void FreeAll() {
    for (int i = 0; i < kPorts; ++i) Free(i);
  }

 private:
  PortRange() {
    fds_.fill(-1);
    for (int attempt = 0; attempt < 50 && !found(); ++attempt) {
      fds_[0] = Listen(0);
      if (fds_[0] < 0) continue;
      const int low = PortOf(fds_[0]);
      int held = 1;
      while (held < kPorts && low + held <= 65535 && (fds_[held] = Listen(low + held)) >= 0) ++held;
      if (held == kPorts) low_ = low;
      FreeAll();
    }
    if (!found()) return;
    setenv("FI_TCP_PORT_LOW_RANGE", std::to_string(low_).c_str(), 1);
    setenv("FI_TCP_PORT_HIGH_RANGE", std::to_string(low_ + kPorts - 1).c_str(), 1);
  }
  int low_ = 0;
  std::array<int, kPorts> fds_;
};

// An agent's session server with kSessions devices (grant gN on devN), its
// log captured.
class Agent {
 public:
  explicit Agent(absl::Duration endpoint_retry) {
    Logger::SetSink(&log_);
    for (int i = 0; i < kSessions; ++i) {
      grants_.Upsert({Grant(i), absl::StrCat("dev", i), "node-a", "secret-token", absl::InfiniteFuture()});
      devices_.push_back(std::make_unique<testing::TestDevice>());
    }
    SessionServerOptions opts;
    opts.metrics = &metrics_;
    opts.endpoint_retry = endpoint_retry;
    opts.endpoint_retry_max = endpoint_retry;
    // The tests fill the range after the agent starts: a fabric opened ahead
    // would serve the first reservation. Without a spare every endpoint is
    // opened when its session needs it.
    opts.spare_fabric = false;
    std::map<std::string, SessionDevice*> devices;
    for (int i = 0; i < kSessions; ++i) devices[absl::StrCat("dev", i)] = devices_[i].get();
    auto server = SessionServer::Create(opts, &grants_, devices);
    if (!server.ok()) return;
    server_ = std::move(*server);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(server_.get());
    grpc_ = builder.BuildAndStart();
    endpoint_ = "127.0.0.1:" + std::to_string(port);
  }
  ~Agent() {
    if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now());
    if (server_) server_->Stop();
    Logger::SetSink(&std::cerr);
  }
  bool ok() const { return grpc_ != nullptr; }
  static std::string Grant(int i) { return absl::StrCat("g", i); }
  SessionServer& server() { return *server_; }
  testing::TestDevice& device(int i) { return *devices_[i]; }
  absl::StatusOr<client::SessionTicket> Reserve(int i) {
    return client::ControlClient().Reserve(endpoint_, {Grant(i), "secret-token", "node-a"});
  }
  // Log lines (so far) containing `text`.
  int Lines(const std::string& text) {
    const std::string all = log_.str();
    int n = 0;
    for (size_t at = all.find(text); at != std::string::npos; at = all.find(text, at + 1)) ++n;
    return n;
  }
  std::string log() { return log_.str(); }

 private:
  std::ostringstream log_;
  MetricsRegistry metrics_;
  GrantTable grants_;
  std::vector<std::unique_ptr<testing::TestDevice>> devices_;
  std::unique_ptr<SessionServer> server_;
  std::unique_ptr<grpc::Server> grpc_;
  std::string endpoint_;
};

// Polls for up to 10 s.
template <typename Cond>
bool Eventually(Cond cond) {
  for (int i = 0; i < 1000; ++i) {
    if (cond()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return cond();
}

// Attaches to `ticket`, writes a register, and checks the device applied it.
void AttachAndWrite(const client::SessionTicket& ticket, testing::TestDevice& device, uint32_t value) {
  auto c = client::SessionClient::Attach(ticket, {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Write(0, 0x10, 4, value).ok());
  ASSERT_TRUE((*c)->Sync(absl::Seconds(5)).ok());
  uint32_t applied = 0;
  ASSERT_TRUE(device.ReadBar(0, 0x10, 4, reinterpret_cast<uint8_t*>(&applied)).ok());
  EXPECT_EQ(applied, value);
  ASSERT_TRUE((*c)->Close().ok());
}

constexpr absl::Duration kNever = absl::Hours(1);  // no retry on a timer: only an attach retries

TEST(SessionPortsTest, ASessionRefusedBecauseTheRangeWasFullAttachesOnceAPortIsFreeWithoutBeingClosed) {
  PortRange& range = PortRange::Get();
  ASSERT_TRUE(range.found());
  range.Fill();
  auto free_range = absl::MakeCleanup([&] { range.FreeAll(); });
  Agent agent(kNever);
  ASSERT_TRUE(agent.ok());

  // The range is full when the session is reserved: its endpoint (opened by
  // its worker right after the reservation) does not open, which is logged.
  auto ticket = agent.Reserve(0);
  ASSERT_TRUE(ticket.ok()) << ticket.status();
  EXPECT_TRUE(Eventually([&] { return agent.Lines("session fabric did not open") == 1; })) << agent.log();
  EXPECT_FALSE(agent.server().fabric_address(ticket->session_id).ok());

  // One port free: the workload's own endpoint takes it, the agent tries its
  // endpoint again for the attach, the range is full again: refused with the
  // reason, and the session stays reserved.
  range.Free(0);
  auto refused = client::SessionClient::Attach(*ticket, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_NE(refused.status().message().find("port range"), std::string::npos) << refused.status();
  EXPECT_EQ(agent.Lines("session fabric did not open"), 2) << agent.log();
  EXPECT_EQ(agent.server().live_sessions(), 1u);

  // Ports free: the next attach of the same session (no close, no new
  // reservation) opens the agent's endpoint and works.
  range.FreeAll();
  AttachAndWrite(*ticket, agent.device(0), 0x77);
  EXPECT_EQ(agent.Lines("session fabric opened after retries"), 1) << agent.log();
  ASSERT_TRUE(client::ControlClient().Close(*ticket).ok());
  EXPECT_EQ(agent.server().live_sessions(), 0u);
}

TEST(SessionPortsTest, ASessionRefusedBecauseTheRangeWasFullGetsItsEndpointOnItsOwnOnceAPortIsFree) {
  PortRange& range = PortRange::Get();
  ASSERT_TRUE(range.found());
  range.Fill();
  auto free_range = absl::MakeCleanup([&] { range.FreeAll(); });
  Agent agent(absl::Milliseconds(20));
  ASSERT_TRUE(agent.ok());
  auto ticket = agent.Reserve(0);
  ASSERT_TRUE(ticket.ok()) << ticket.status();
  EXPECT_TRUE(Eventually([&] { return agent.Lines("session fabric did not open") >= 2; })) << agent.log();

  // Nobody attaches: the session's own retries (every 20 ms here) find the
  // freed port.
  range.FreeAll();
  EXPECT_TRUE(Eventually([&] { return agent.server().fabric_address(ticket->session_id).ok(); })) << agent.log();
  AttachAndWrite(*ticket, agent.device(0), 0x78);
  ASSERT_TRUE(client::ControlClient().Close(*ticket).ok());
}

TEST(SessionPortsTest, SessionsReservedAtOnceInASmallRangeAllGetEndpointsWhenTheRangeHasRoom) {
  PortRange& range = PortRange::Get();
  ASSERT_TRUE(range.found());
  range.FreeAll();
  // No retry on a timer: every endpoint opens at its reservation, however
  // the binds race (the fabric layer binds again when its port was taken).
  Agent agent(kNever);
  ASSERT_TRUE(agent.ok());
  std::vector<absl::StatusOr<client::SessionTicket>> tickets(kSessions, absl::UnknownError("not reserved"));
  std::vector<std::thread> reservers;
  for (int i = 0; i < kSessions; ++i) reservers.emplace_back([&, i] { tickets[i] = agent.Reserve(i); });
  for (std::thread& t : reservers) t.join();
  for (int i = 0; i < kSessions; ++i) {
    ASSERT_TRUE(tickets[i].ok()) << tickets[i].status();
    EXPECT_TRUE(Eventually([&] { return agent.server().fabric_address(tickets[i]->session_id).ok(); }))
        << "session " << i << "\n" << agent.log();
  }
  EXPECT_EQ(agent.Lines("session fabric did not open"), 0) << agent.log();
  // Each works (one client at a time: its endpoint takes a port of the range too).
  for (int i = 0; i < kSessions; ++i) {
    AttachAndWrite(*tickets[i], agent.device(i), 0x100 + i);
    ASSERT_TRUE(client::ControlClient().Close(*tickets[i]).ok());
  }
  std::cerr << "binds lost to a racing endpoint and opened again: " << agent.Lines("\"port_taken\"") << " sessions\n";
}

}  // namespace
}  // namespace rpci::agent
