#ifndef RPCI_AGENT_APP_AGENT_APP_H_
#define RPCI_AGENT_APP_AGENT_APP_H_

// The whole device-server agent as one object (`rpci-agent serve`):
// inventory -> export policy -> exported devices; device backends -> session
// devices -> SessionServer on a gRPC server; ControllerLink (register,
// heartbeat with device health, grants); HealthServer (/healthz, /readyz,
// /metrics). main only turns flags and the config file into AgentOptions.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/app/agent_config.h"
#include "agent/registration/controller_link.h"
#include "agent/session/session_device.h"
#include "agent/session/session_server.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/tls_settings.h"
#include "grpcpp/grpcpp.h"
#include "proto/rpci/v1/device.pb.h"

namespace rpci::agent {

// rpci's PCI ids for emulated functions (docs/agent.md). 0x1de5 is not a
// PCI-SIG assigned vendor id that rpci owns; it only marks functions that
// exist in software, in a domain (kEmuDomain) no host bridge uses.
inline constexpr uint32_t kEmuVendorId = 0x1de5;
inline constexpr uint32_t kEmuDeviceId = 0xe001;
inline constexpr uint32_t kEmuClassCode = 0x120000;  // processing accelerator
inline constexpr uint32_t kEmuDomain = 0xfffe;

// The synthetic PCIe function of emulated device number `index` (0-based,
// across all emu entries): bdf fffe:<index/32>:<index%32>.0, the ids above,
// driver "rpci-emu", one memory BAR per session BAR.
rpci::v1::PcieFunction EmuFunction(int index, const std::vector<SessionDevice::Bar>& bars);

// Makes the session devices behind exported devices. A backend that refuses
// (e.g. vfio for a function bound to a host driver the policy may not take it
// from, or in a group that is not viable) returns an error naming the device;
// the agent then does not export it.
struct DeviceBackends {
  std::function<absl::StatusOr<std::unique_ptr<SessionDevice>>(const EmuDevicesConfig& config, int index)> emu;
  std::function<absl::StatusOr<std::unique_ptr<SessionDevice>>(const AgentOptions& options,
                                                                const rpci::v1::PcieFunction& function)>
      vfio;
};

class AgentApp {
 public:
  // Validates the options, resolves the fabric provider, inventories and
  // selects devices, creates their backends and the session server (loading
  // the checkpoint). Binds no gRPC/HTTP listener yet. INVALID_ARGUMENT for
  // bad options; the failing part's error otherwise.
  static absl::StatusOr<std::unique_ptr<AgentApp>> Create(AgentOptions options, DeviceBackends backends);
  ~AgentApp();
  AgentApp(const AgentApp&) = delete;
  AgentApp& operator=(const AgentApp&) = delete;

  // Serves SessionControl and HTTP and starts the controller link.
  // UNAVAILABLE naming the address when a listener cannot be bound.
  absl::Status Start();

  // Stops the link, the listeners and the session server; live sessions stay
  // in the checkpoint so the next agent resumes them. Idempotent.
  void Stop();

  // OK with a summary once registered with the controller and serving
  // sessions; the reason otherwise (what /readyz answers).
  absl::StatusOr<std::string> Readiness() const;

  const std::vector<rpci::v1::ExportedDevice>& devices() const { return devices_; }
  const std::string& session_endpoint() const { return session_endpoint_; }
  const std::string& fabric_provider() const { return provider_; }
  int session_port() const { return session_port_; }
  int http_port() const { return http_port_; }
  MetricsRegistry& metrics() { return metrics_; }
  SessionServer& session_server() { return *session_server_; }

 private:
  explicit AgentApp(AgentOptions options);
  absl::Status AddEmuDevices(const DeviceBackends& backends);
  absl::Status AddRealDevices(const DeviceBackends& backends);
  // Exports `d`, served by `dev`: healthy, with the agent's labels and the
  // backend's DMA size.
  void Export(rpci::v1::ExportedDevice d, std::unique_ptr<SessionDevice> dev);
  std::vector<rpci::v1::DeviceHealthReport> Health() const;

  const AgentOptions options_;
  Logger log_;
  MetricsRegistry metrics_;
  std::string provider_;
  GrantTable grants_;
  std::vector<rpci::v1::ExportedDevice> devices_;
  std::vector<std::unique_ptr<SessionDevice>> backends_;
  std::unique_ptr<SessionServer> session_server_;
  std::unique_ptr<DaemonTls> tls_;  // outlives the servers and channels using it
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<ControllerLink> link_;
  std::unique_ptr<HealthServer> health_;
  std::string session_endpoint_;
  int session_port_ = 0;
  int http_port_ = 0;
  std::atomic<bool> serving_{false};
  bool stopped_ = false;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_APP_AGENT_APP_H_
