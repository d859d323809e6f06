#include "common/http_server.h"

#include <sys/socket.h>

#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace rpci {

HealthServer::HealthServer(const MetricsRegistry* registry, ReadinessCheck readiness)
    : registry_(registry), readiness_(std::move(readiness)) {}

HealthServer::~HealthServer() { Stop(); }

absl::StatusOr<int> HealthServer::Start(const std::string& address) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(address, &host, &port); !s.ok()) return s;
  return Start(host, port);
}

absl::StatusOr<int> HealthServer::Start(const std::string& host, int port) {
  if (server_) return absl::FailedPreconditionError("health server already started");
  auto server = std::make_unique<httplib::Server>();
  server->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<std::string> ready = readiness_ ? readiness_() : std::string("ok");
    if (ready.ok()) {
      res.set_content(*ready + "\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(std::string(ready.status().message()) + "\n", "text/plain");
    }
  });
  server->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry_->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  // httplib's default also sets SO_REUSEPORT, which lets a second process
  // silently share our port; keep only SO_REUSEADDR.
  server->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  int bound = port;
  if (port == 0) {
    bound = server->bind_to_any_port(host);
  } else if (!server->bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("health server: cannot bind ", host, ":", port));
  }
  server_ = std::move(server);
  thread_ = std::thread([s = server_.get()] { s->listen_after_bind(); });
  // listen_after_bind flips is_running(); Stop() before that would not stop it.
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return bound;
}

void HealthServer::Stop() {
  if (!server_) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

absl::Status ParseHostPort(const std::string& text, std::string* host, int* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": expected host:port"));
  }
  std::string h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int p = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &p) || p < 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": port must be 0..65535"));
  }
  *host = h.empty() ? "0.0.0.0" : h;
  *port = p;
  return absl::OkStatus();
}

}  // namespace rpci
