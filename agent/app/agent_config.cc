#include "agent/app/agent_config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/daemon.h"
#include "common/fabric/fabric.h"
#include "common/http_server.h"

namespace rpci::agent {

namespace {

constexpr int64_t kMaxDma = int64_t{1} << 30;  // EmuBackend::Create accepts up to 1 GiB

void ReadEmu(ConfigReader& root, AgentOptions* options) {
  if (!root.Has("emu")) return;
  options->emu.clear();
  for (ConfigReader& r : root.ObjectList("emu")) {
    EmuDevicesConfig e;
    r.String("pool", &e.pool);
    if (!IsDnsLabel(e.pool)) r.AddError("pool", absl::StrCat("\"", e.pool, "\" is not a DNS label"));
    r.Int("count", &e.count, 0, 256);
    r.Int("dma_size", &e.dma_size, 4096, kMaxDma);
    if (e.dma_size % 4096 != 0) r.AddError("dma_size", "must be a multiple of 4096");
    options->emu.push_back(e);
  }
}

// `labels`: a mapping of strings, replacing the defaults when given.
void ReadLabels(ConfigReader& root, AgentOptions* options) {
  nlohmann::json labels;
  root.Raw("labels", &labels);
  if (labels.is_null()) return;
  if (!labels.is_object()) {
    root.AddError("labels", "expected a mapping of strings, got " + JsonTypeName(labels));
    return;
  }
  options->labels.clear();
  for (const auto& [k, v] : labels.items()) {
    if (!v.is_string()) {
      root.AddError("labels", absl::StrCat(k, ": expected string, got ", JsonTypeName(v)));
    } else {
      options->labels[k] = v.get<std::string>();
    }
  }
}

// `session`: listen and advertise addresses, the checkpoint dir, timeouts
// in seconds and the throttle in MiB.
void ReadSession(ConfigReader session, AgentOptions* options) {
  session.String("listen", &options->session_listen);
  session.String("advertise", &options->session_advertise);
  session.String("state_dir", &options->state_dir);
  int64_t grace = absl::ToInt64Seconds(options->session_grace);
  session.Int("grace_seconds", &grace, 1, 3600);
  options->session_grace = absl::Seconds(grace);
  int64_t attach = absl::ToInt64Seconds(options->attach_timeout);
  session.Int("attach_timeout_seconds", &attach, 1, 7 * 24 * 3600);
  options->attach_timeout = absl::Seconds(attach);
  agent::ThrottleOptions& throttle = options->session_throttle;
  int64_t throttle_mib = static_cast<int64_t>(throttle.bytes_per_second >> 20);
  int64_t burst_mib = static_cast<int64_t>(throttle.burst_bytes >> 20);
  int64_t throttle_nice = throttle.nice;
  session.Int("throttle_mib_per_second", &throttle_mib, 1, 1 << 20);
  session.Int("throttle_burst_mib", &burst_mib, 1, 1 << 20);
  session.Int("throttle_nice", &throttle_nice, 0, 19);
  throttle.bytes_per_second = static_cast<uint64_t>(throttle_mib) << 20;
  throttle.burst_bytes = static_cast<uint64_t>(burst_mib) << 20;
  throttle.nice = static_cast<int>(throttle_nice);
}

}  // namespace

absl::Status ReadAgentConfig(const nlohmann::json& config, const std::string& origin, AgentOptions* options) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": expected a mapping at the top level, got ", JsonTypeName(config)));
  }
  ConfigReader r(config, origin);
  r.String("node", &options->node);
  ReadLabels(r, options);

  ConfigReader controller = r.Object("controller");
  controller.String("address", &options->controller);
  controller.Bool("insecure", &options->tls.insecure);

  ConfigReader tls = r.Object("tls");
  tls.String("cert", &options->tls.cert_file);
  tls.String("key", &options->tls.key_file);
  tls.String("ca", &options->tls.ca_file);
  tls.String("identity_address", &options->tls.identity_address);
  tls.String("token_file", &options->tls.token_file);
  tls.String("cert_dir", &options->tls.cert_dir);

  ReadSession(r.Object("session"), options);

  fabric::ReadFabricConfig(r.Object("fabric"), &options->fabric);

  ConfigReader inventory = r.Object("inventory");
  inventory.String("sysfs_root", &options->sysfs_root);
  inventory.Bool("vfio", &options->vfio);
  inventory.Bool("vfio_allow_unbind", &options->vfio_allow_unbind);
  inventory.Int("vfio_dma_size", &options->vfio_dma_size, 4096, int64_t{1} << 34);

  if (r.Has("export")) {
    ConfigReader exp = r.Object("export");
    options->export_policy = ExportPolicy::Read(exp);
  }
  ReadEmu(r, options);

  ConfigReader http = r.Object("http");
  http.String("listen", &options->http_listen);
  r.String("log_level", &options->log_level);
  return r.Finish();
}

absl::Status LoadAgentConfig(const std::string& path, AgentOptions* options) {
  absl::StatusOr<nlohmann::json> config = LoadConfigFile(path);
  if (!config.ok()) return config.status();
  return ReadAgentConfig(*config, path, options);
}

absl::Status ValidateAgentOptions(const AgentOptions& o) {
  std::vector<std::string> errors;
  if (o.node.empty()) {
    errors.push_back("node: required (config `node`, --node or $NODE_NAME)");
  } else if (absl::StatusOr<std::string> id = DeviceId(o.node, PciAddress{}); !id.ok()) {
    errors.push_back(absl::StrCat("node: \"", o.node, "\" cannot name devices: ", id.status().message()));
  }
  if (o.controller.empty()) {
    errors.push_back("controller.address: required (config `controller.address` or --controller)");
  } else {
    std::string host;
    int port = 0;
    if (absl::Status s = ParseHostPort(o.controller, &host, &port); !s.ok() || host.empty()) {
      errors.push_back(absl::StrCat("controller.address: \"", o.controller, "\": expected host:port"));
    }
  }
  if (absl::Status s = ValidateTlsSettings(o.tls, /*node_identity=*/true); !s.ok()) {
    errors.push_back(std::string(s.message()));
  }
  std::string host;
  int port = 0;
  if (!ParseHostPort(o.session_listen, &host, &port).ok()) {
    errors.push_back(absl::StrCat("session.listen: \"", o.session_listen, "\": expected host:port"));
  }
  if (!o.session_advertise.empty() && (!ParseHostPort(o.session_advertise, &host, &port).ok() || port == 0)) {
    errors.push_back(
        absl::StrCat("session.advertise: \"", o.session_advertise, "\": expected host:port with a port"));
  }
  if (!o.http_listen.empty() && !ParseHostPort(o.http_listen, &host, &port).ok()) {
    errors.push_back(absl::StrCat("http.listen: \"", o.http_listen, "\": expected host:port"));
  }
  const std::vector<std::string> providers = {fabric::kAuto, fabric::kTcp, fabric::kVerbs, fabric::kShm};
  if (std::find(providers.begin(), providers.end(), o.fabric.provider) == providers.end()) {
    errors.push_back(absl::StrCat("fabric.provider: \"", o.fabric.provider,
                                  "\" is not one of auto, tcp;ofi_rxm, verbs;ofi_rxm, shm"));
  }
  int64_t emu_total = 0;
  for (size_t i = 0; i < o.emu.size(); ++i) {
    if (o.emu[i].count < 0) errors.push_back(absl::StrCat("emu[", i, "].count: must be >= 0"));
    emu_total += o.emu[i].count;
  }
  if (emu_total == 0 && o.export_policy.rules().empty()) {
    errors.push_back("emu: nothing to export (no emu devices and no export.rules)");
  }
  if (emu_total > 256) errors.push_back(absl::StrCat("emu: ", emu_total, " devices; at most 256 in all"));
  if (errors.empty()) return absl::OkStatus();
  std::string msg = "rpci-agent serve: invalid options: ";
  for (size_t i = 0; i < errors.size(); ++i) absl::StrAppend(&msg, i ? "; " : "", errors[i]);
  return absl::InvalidArgumentError(msg);
}

void AddServeFlags(FlagSet& flags, AgentOptions* o, ServeFlags* extra) {
  flags.String("config", &o->config_file, "YAML/JSON config file (docs/agent.md); flags override it");
  AddNodeFlag(flags, &o->node, "this device server's node name (default $NODE_NAME)");
  flags.String("controller", &o->controller, "controller AgentRegistry address host:port");
  AddTlsFlags(flags, &o->tls, "agent:<node>", /*node_identity=*/true);
  flags.String("session-listen", &o->session_listen, "SessionControl gRPC listen address host:port");
  flags.String("session-advertise", &o->session_advertise,
               "host:port plugins dial (default: listen address, or fabric address + bound port)");
  flags.String("state-dir", &o->state_dir, "directory of the session checkpoint");
  flags.String("fabric-provider", &o->fabric.provider, "auto, tcp;ofi_rxm, verbs;ofi_rxm or shm");
  flags.String("fabric-address", &o->fabric.node, "interface address the data path binds (e.g. the pod IP)");
  flags.String("sysfs-root", &o->sysfs_root, "sysfs mount to inventory");
  flags.Bool("vfio", &o->vfio, "export the real functions the policy selects through VFIO (opt-in)");
  flags.Bool("vfio-allow-unbind", &o->vfio_allow_unbind,
             "take a selected function from its host driver (default: such functions are not exported)");
  flags.Int("vfio-dma-size", &o->vfio_dma_size, "bytes of each VFIO device's DMA space (pinned)");
  flags.Int("emu-count", &extra->emu_count, "emulated devices to create (replaces the config's emu list)");
  flags.String("emu-pool", &extra->emu_pool, "pool of the --emu-count devices");
  flags.String("http-listen", &o->http_listen, "address of /healthz, /readyz, /metrics (empty: off)");
  AddLogLevelFlag(flags, &o->log_level);
}

void ApplyServeFlags(const FlagSet& flags, const ServeFlags& extra, AgentOptions* o) {
  if (flags.IsSet("emu-count")) {
    EmuDevicesConfig e;
    e.count = extra.emu_count;
    e.pool = extra.emu_pool;
    o->emu = {e};
  }
}

}  // namespace rpci::agent
