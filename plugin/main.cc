// rpci-plugin: the kubelet plugin of a compute node: device plugin and/or
// DRA driver, per pool. Wiring only; the logic is in plugin/plugin.h and
// plugin/dra_driver.h.

#include <cstdlib>
#include <iostream>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/daemon.h"
#include "common/flags.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/termination.h"
#include "common/tls.h"
#include "common/tls_settings.h"
#include "plugin/controller_client.h"
#include "plugin/dra_driver.h"
#include "plugin/plugin.h"
#include "plugin/session_opener.h"

namespace {

// Command-line settings beyond the plugin's options.
struct Settings {
  rpci::plugin::PluginOptions options;
  std::string controller = "rpci-controller:7443", pools = "emu";
  rpci::TlsSettings tls;
  std::string health_addr = "0.0.0.0:8082";
  std::string log_level = "info", fabric_ports, cdi = "off";
  int64_t numa = -1, usage_seconds = 1, usage_ms = 0, release_grace_seconds = 30;
};

void AddFlags(rpci::FlagSet& flags, Settings& st) {
  rpci::plugin::PluginOptions& o = st.options;
  rpci::AddNodeFlag(flags, &o.node_name, "this compute node's name (default $NODE_NAME)");
  flags.String("controller", &st.controller, "controller NodeRegistry address host:port");
  flags.String("pools", &st.pools,
               "comma-separated pools, each <pool>[:device-plugin|dra|both]: device-plugin (the default) registers "
               "resource rpci.io/<pool> with the device manager; dra serves the pool's ResourceClaims through the DRA "
               "driver rpci.io; both does both");
  flags.String("kubelet-dir", &o.kubelet_dir,
               "the kubelet's root directory (DRA: plugins_registry/rpci.io-reg.sock, plugins/rpci.io/dra.sock)");
  flags.String("plugin-dir", &o.plugin_dir, "kubelet device-plugin socket directory");
  flags.String("pod-resources-socket", &o.pod_resources_socket, "kubelet pod-resources API socket");
  flags.String("cdi", &st.cdi,
               "on: containers get their devices' env, mounts and device nodes through CDI specs in --cdi-dir "
               "(the runtime must have CDI enabled); off: through the Allocate response");
  flags.String("cdi-dir", &o.cdi_dir, "directory for CDI spec files (with --cdi=on)");
  flags.String("state-dir", &o.state_dir, "host directory of per-device session dirs (mounted into containers)");
  flags.String("container-dir", &o.container_dir, "where session dirs appear inside containers");
  flags.String("fabric-port-range", &st.fabric_ports,
               "LOW-HIGH: ports workloads' fabric endpoints listen on (FI_TCP_PORT_LOW/HIGH_RANGE in the container); "
               "empty: any");
  flags.String("sysfs-root", &o.sysfs_root,
               "sysfs the RDMA NICs are read from (with verbs, a container gets the uverbs device of the NIC that "
               "reaches its agent, and rdma_cm)");
  flags.Int("nic-numa-node", &st.numa, "NUMA node of the fabric NIC, advertised as device topology (-1: none)");
  flags.Int("usage-interval-seconds", &st.usage_seconds,
            "how often pod-resources is read and usage reported (bounds how fast a device is handed over)");
  flags.Int("usage-interval-ms", &st.usage_ms, "the same in milliseconds; wins when > 0");
  flags.Int("release-grace-seconds", &st.release_grace_seconds,
            "a session no pod holds is released once it is this old");
  AddTlsFlags(flags, &st.tls, "plugin:<node>", /*node_identity=*/true);
  flags.Int("session-group", &o.session_group,
            "gid owning session dirs and key files (0640), for non-root workloads with it in "
            "supplementalGroups (-1: key readable by root only)");
  flags.String("health-addr", &st.health_addr, "host:port of /healthz, /readyz, /metrics (empty: off)");
  rpci::AddLogLevelFlag(flags, &st.log_level);
}

// Parses the command line into `st`; an exit code when the process should
// end (--help, bad flags).
std::optional<int> ParseSettings(int argc, char** argv, Settings& st) {
  using namespace rpci;
  plugin::PluginOptions& o = st.options;
  FlagSet flags("rpci-plugin [flags]",
                "Kubelet plugin: advertises the remote PCIe devices the controller assigned to this node as "
                "rpci.io/<pool> (device plugin) and/or prepares ResourceClaims of driver rpci.io (DRA), attaching "
                "the devices to containers through memory-mirroring sessions.");
  AddFlags(flags, st);
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return exit_code;
  if (std::optional<int> exit_code = ApplyLogLevelFlag(st.log_level)) return exit_code;
  if (absl::Status s = plugin::ParsePools(st.pools, &o); !s.ok()) {
    std::cerr << "--pools: " << s.message() << "\n";
    return 2;
  }
  o.nic_numa_node = st.numa;
  if (absl::Status s = ParseCdiMode(st.cdi, &o); !s.ok()) {
    std::cerr << "--cdi: " << s.message() << "\n";
    return 2;
  }
  if (absl::Status s = ParseFabricPortRange(st.fabric_ports, &o); !s.ok()) {
    std::cerr << "--fabric-port-range: " << s.message() << "\n";
    return 2;
  }
  o.usage_interval = st.usage_ms > 0 ? absl::Milliseconds(st.usage_ms) : absl::Seconds(st.usage_seconds);
  o.release_grace = absl::Seconds(st.release_grace_seconds);
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace rpci;
  Settings st;
  if (std::optional<int> exit_code = ParseSettings(argc, argv, st)) return *exit_code;
  plugin::PluginOptions& o = st.options;
  const std::string& controller = st.controller;
  const std::string& pools = st.pools;
  const std::string& health_addr = st.health_addr;
  TlsSettings& tls_settings = st.tls;
  Logger log("plugin");
  MetricsRegistry metrics;
  o.metrics = &metrics;

  absl::StatusOr<std::unique_ptr<DaemonTls>> tls = DaemonTls::Start(tls_settings, {"plugin", o.node_name, {}}, log);
  if (!tls.ok()) return CannotStart(log, tls.status());
  std::shared_ptr<grpc::ChannelCredentials> creds = (*tls)->ChannelCredentials();
  o.session_ca_pem = (*tls)->ca_pem();  // workloads verify the agents with it
  plugin::GrpcControllerClient controller_client(grpc::CreateChannel(controller, creds));
  plugin::AgentSessionOpener sessions(creds, o.node_name);
  plugin::Plugin p(o, &controller_client, &sessions);
  plugin::DraDriver dra(o, &controller_client, &sessions);
  absl::Status started = o.pools.empty() ? absl::OkStatus() : p.Start();
  if (started.ok() && !o.dra_pools.empty()) started = dra.Start();
  if (!started.ok()) {
    log.Error("cannot start", {{"error", std::string(started.message())}});
    return 1;
  }
  rpci::v1::RegisterNodeRequest node;
  node.set_node(o.node_name);
  std::set<std::string> all_pools(o.pools.begin(), o.pools.end());
  all_pools.insert(o.dra_pools.begin(), o.dra_pools.end());
  for (const std::string& pool : all_pools) node.add_pools(pool);
  controller_client.StartAssignmentWatch(node, [&p](const rpci::v1::AssignmentSet& set) { p.SetAssignments(set); });

  HealthServer health(&metrics, [&]() -> absl::StatusOr<std::string> {
    if (!controller_client.watching()) return absl::UnavailableError("no assignment stream from the controller");
    if (!o.pools.empty() && p.registrations() == 0) return absl::UnavailableError("not registered with the kubelet");
    if (!o.dra_pools.empty() && dra.registrations() == 0) {
      return absl::UnavailableError("DRA driver not registered with the kubelet");
    }
    return std::string("serving");
  });
  if (!health_addr.empty()) {
    absl::StatusOr<int> bound = health.Start(health_addr);
    if (!bound.ok()) {
      log.Error("cannot serve health", {{"error", std::string(bound.status().message())}});
      return 1;
    }
  }
  log.Info("serving", {{"node", o.node_name}, {"controller", controller}, {"pools", pools}});
  WaitForTermination();
  controller_client.Stop();
  dra.Stop();
  p.Stop();
  health.Stop();
  return 0;
}
