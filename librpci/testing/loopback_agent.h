#ifndef RPCI_LIBRPCI_TESTING_LOOPBACK_AGENT_H_
#define RPCI_LIBRPCI_TESTING_LOOPBACK_AGENT_H_

// A real agent session server (gRPC SessionControl + tcp;ofi_rxm data path)
// on 127.0.0.1 for librpci tests, plus what the plugin would do: reserve a
// session for a grant and describe it in a container environment with a key
// file (docs/librpci.md).

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/session/session_server.h"
#include "agent/session/testing/loopback_server.h"
#include "client/session_client.h"
#include "common/metrics.h"

namespace rpci::lib::testing {

class LoopbackAgent {
 public:
  // Exports `devices` (id -> device, outliving the agent); each gets grant
  // "grant-<id>" with token "token" for node "node".
  static absl::StatusOr<std::unique_ptr<LoopbackAgent>> Start(std::map<std::string, agent::SessionDevice*> devices);
  ~LoopbackAgent();

  const std::string& endpoint() const { return endpoint_; }
  agent::SessionServer& server() { return served_->server(); }
  MetricsRegistry& metrics() { return metrics_; }

  // Reserves sessions for `device_ids` (in order) as the plugin does and
  // returns the container environment for them; key files go in a fresh
  // directory under /tmp removed with the agent.
  absl::StatusOr<std::map<std::string, std::string>> ReserveEnv(const std::vector<std::string>& device_ids);

 private:
  LoopbackAgent() = default;
  MetricsRegistry metrics_;
  agent::GrantTable grants_;
  std::unique_ptr<agent::testing::LoopbackSessionServer> served_;
  std::string endpoint_;
  std::string key_dir_;
  int reserved_ = 0;
};

}  // namespace rpci::lib::testing

#endif  // RPCI_LIBRPCI_TESTING_LOOPBACK_AGENT_H_
