#ifndef RPCI_AGENT_APP_AGENT_CONFIG_H_
#define RPCI_AGENT_APP_AGENT_CONFIG_H_

// What `rpci-agent serve` is told: a YAML/JSON config file (docs/agent.md,
// deploy/config/agent-config.yaml) with command-line flags overriding it.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/inventory/export_policy.h"
#include "common/fabric/fabric.h"
#include "agent/session/throttle.h"
#include "common/flags.h"
#include "common/tls_settings.h"
#include "nlohmann/json.hpp"

namespace rpci::agent {

// One `emu:` entry: `count` emulated devices feeding pool `pool`.
struct EmuDevicesConfig {
  std::string pool = "emu";
  int64_t count = 1;
  int64_t dma_size = 1 << 20;   // bytes of the device's DMA space
};

struct AgentOptions {
  std::string config_file;  // read by LoadAgentConfig; informational after
  std::string node;         // device server's node name (default $NODE_NAME)
  std::map<std::string, std::string> labels;  // node labels for pool selectors

  std::string controller;  // controller AgentRegistry address host:port
  // mTLS (common/tls_settings.h), fail closed: static files, a node
  // certificate from the controller, or `insecure` (config
  // `controller.insecure`), warned at every start.
  TlsSettings tls;

  std::string session_listen = "0.0.0.0:7450";  // SessionControl gRPC
  // host:port plugins and workloads dial; empty: the listen address, or for
  // a wildcard listen address the fabric address with the bound port.
  std::string session_advertise;
  std::string state_dir = "/var/lib/rpci-agent";  // session checkpoint
  // Longer than a client's reconnect window, so a network blip of ~10 s
  // does not tear the session down before the client is back.
  absl::Duration session_grace = absl::Seconds(30);
  absl::Duration attach_timeout = absl::Minutes(10);
  // A session over its byte budget runs nicer (config session.throttle_*).
  agent::ThrottleOptions session_throttle;

  // The data path (config `fabric:`, fabric::ReadFabricConfig): provider
  // auto | tcp;ofi_rxm | verbs;ofi_rxm | shm, `node` the interface address
  // it binds (config `fabric.address`; empty: 127.0.0.1).
  fabric::FabricConfig fabric;

  std::string sysfs_root = "/sys";
  // Opt-in: export the real functions the policy selects through VFIO
  // (vfio-pci; the agent needs /dev/vfio and a writable /sys).
  bool vfio = false;
  // Whether a selected function bound to a host driver may be taken from it
  // (unbound and bound to vfio-pci). Off: such functions are not exported.
  bool vfio_allow_unbind = false;
  int64_t vfio_dma_size = 4 << 20;  // bytes of each VFIO device's DMA space (pinned)
  ExportPolicy export_policy;
  std::vector<EmuDevicesConfig> emu;

  std::string http_listen = "0.0.0.0:7451";  // /healthz /readyz /metrics; empty: off
  std::string log_level = "info";
};

// Reads a config object into `options` (absent keys keep their values).
// INVALID_ARGUMENT naming `origin` and every bad or unknown key by its path
// ("agent.yaml: fabric.provider: ...").
absl::Status ReadAgentConfig(const nlohmann::json& config, const std::string& origin, AgentOptions* options);

// LoadConfigFile + ReadAgentConfig.
absl::Status LoadAgentConfig(const std::string& path, AgentOptions* options);

// Cross-field checks after config and flags: node, controller, TLS or
// insecure, addresses, something to export. INVALID_ARGUMENT naming the key.
absl::Status ValidateAgentOptions(const AgentOptions& options);

// `rpci-agent serve` flags bound to `options`, plus the emu overrides:
// `--emu-count` (when given, replaces the config's emu list with one entry of
// that many devices in `--emu-pool`).
struct ServeFlags {
  int64_t emu_count = 0;
  std::string emu_pool = "emu";
};
void AddServeFlags(FlagSet& flags, AgentOptions* options, ServeFlags* extra);
// After FlagSet::Apply: folds `extra` into `options`.
void ApplyServeFlags(const FlagSet& flags, const ServeFlags& extra, AgentOptions* options);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_APP_AGENT_CONFIG_H_
