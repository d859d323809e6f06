#ifndef RPCI_COMMON_HTTP_SERVER_H_
#define RPCI_COMMON_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/metrics.h"

namespace httplib {
class Server;
}

namespace rpci {

// Every component's operational HTTP endpoint:
//   GET /healthz  200 "ok" while the process serves at all (liveness);
//   GET /readyz   200 with the readiness message, or 503 with the reason;
//   GET /metrics  the registry in Prometheus text format 0.0.4.
class HealthServer {
 public:
  // Returns OK with a short message ("leader", "follower of pod-a") when ready,
  // or an error whose message says why not. Called on each /readyz request.
  using ReadinessCheck = std::function<absl::StatusOr<std::string>()>;

  // `registry` must outlive the server.
  HealthServer(const MetricsRegistry* registry, ReadinessCheck readiness);
  ~HealthServer();
  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  // Binds host:port (port 0 picks a free one) and serves on a background
  // thread. Returns the bound port, or UNAVAILABLE naming the address.
  absl::StatusOr<int> Start(const std::string& host, int port);
  // The same for "host:port" (ParseHostPort); INVALID_ARGUMENT naming the
  // text when it is not one.
  absl::StatusOr<int> Start(const std::string& address);

  // Stops serving; idempotent, also done by the destructor.
  void Stop();

 private:
  const MetricsRegistry* registry_;
  ReadinessCheck readiness_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

// Splits "host:port" (or "[v6]:port"); INVALID_ARGUMENT naming the text.
absl::Status ParseHostPort(const std::string& text, std::string* host, int* port);

}  // namespace rpci

#endif  // RPCI_COMMON_HTTP_SERVER_H_
