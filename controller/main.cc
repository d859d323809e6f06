// rpci-controller: turns flags into ControllerOptions and runs a
// ControllerApp until SIGINT/SIGTERM.
#include <unistd.h>

#include <iostream>

#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/daemon.h"
#include "common/tls_settings.h"
#include "controller/controller_app.h"

namespace {

// The NodeIdentity service's flags.
void AddIdentityFlags(rpci::FlagSet& flags, rpci::controller::ControllerOptions& o, std::string& identity_accounts,
                      int64_t& node_cert_seconds) {
  flags.String("identity-listen", &o.node_identity.listen,
               "gRPC address of NodeIdentity, where agents and plugins get node certificates (--store=kube; "
               "empty: off)");
  flags.String("identity-ca-cert", &o.node_identity.ca_cert_file, "PEM CA certificate that signs node certificates");
  flags.String("identity-ca-key", &o.node_identity.ca_key_file, "PEM CA key (only the controller may hold it)");
  flags.String("identity-ca-configmap", &o.node_identity.ca_bundle_configmap,
               "namespace/name of a ConfigMap to keep the CA certificate in (ca.crt) for nodes");
  flags.String("identity-service-accounts", &identity_accounts,
               "role=namespace/serviceaccount pairs: whose tokens get which role's certificate");
  flags.Int("node-cert-seconds", &node_cert_seconds, "lifetime of node certificates (renewed at 2/3)");
}

// "role=namespace/name,..." into `accounts`; false (said on stderr) when a
// pair is malformed.
template <typename Map>
bool ParseServiceAccounts(const std::string& text, Map& accounts) {
  for (absl::string_view pair : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first.empty() || kv.second.find('/') == std::string::npos) {
      std::cerr << "--identity-service-accounts: \"" << pair << "\" is not role=namespace/name\n";
      return false;
    }
    accounts[kv.first] = kv.second;
  }
  return true;
}

// What rpci-controller's flags set: ControllerOptions, and the values Run
// converts into it (seconds, milliseconds, the service-account list).
struct Settings {
  rpci::controller::ControllerOptions options;
  std::string log_level = "info";
  std::string identity_accounts = "agent=rpci-system/rpci-agent,plugin=rpci-system/rpci-plugin";
  int64_t node_cert_seconds = 24 * 3600;
  int64_t lease_duration = 15, renew_deadline = 10, retry_period = 2, reconcile_ms = 1000;
  int64_t node_lease = 30, agent_lease = 30;
};

// Every flag of rpci-controller, bound to `st`.
void AddFlags(rpci::FlagSet& flags, Settings& st) {
  rpci::controller::ControllerOptions& o = st.options;
  flags.String("store", &o.store, "where state lives: local (files in --state-dir) or kube (rpci.io CRDs)");
  flags.String("state-dir", &o.state_dir, "state directory of the local store");
  flags.String("kubeconfig", &o.kubeconfig, "kubeconfig file (--store=kube); empty: in-cluster service account");
  flags.String("context", &o.kube_context, "kubeconfig context (empty: its current-context)");
  flags.String("config", &o.config_file, "YAML/JSON file with a `pools:` list (local store; kube reads DevicePools)");
  flags.String("listen", &o.listen, "gRPC address for agents and plugins");
  flags.String("http-listen", &o.http_listen, "address of /healthz, /readyz, /metrics");
  rpci::AddTlsFlags(flags, &o.tls, "controller", /*node_identity=*/false);
  AddIdentityFlags(flags, o, st.identity_accounts, st.node_cert_seconds);
  flags.Bool("leader-elect", &o.leader_elect, "elect a leader on a coordination.k8s.io Lease (--store=kube)");
  flags.String("identity", &o.identity, "this replica's name in the Lease");
  flags.String("lease-name", &o.lease_name, "Lease name");
  flags.String("lease-namespace", &o.lease_namespace, "Lease namespace (default: the service account's)");
  flags.String("namespace", &o.ns,
               "install namespace: DeviceAttachments, grant Secrets and the Lease live here (default: the service "
               "account's)");
  flags.Int("lease-duration-seconds", &st.lease_duration, "how long a silent leader keeps the Lease");
  flags.Int("renew-deadline-seconds", &st.renew_deadline, "a leader that cannot renew this long steps down");
  flags.Int("retry-period-seconds", &st.retry_period, "between Lease attempts");
  flags.Int("reconcile-interval-ms", &st.reconcile_ms, "between policy passes");
  flags.Int("default-spares", &o.default_spares, "spares per node for pools no DevicePool defines");
  flags.Int("default-idle-release-seconds", &o.default_idle_release_seconds,
            "idle release for pools no DevicePool defines (0: never)");
  flags.Int("node-lease-seconds", &st.node_lease, "a plugin silent this long makes its node dead");
  flags.Int("agent-lease-seconds", &st.agent_lease, "an agent silent this long makes its devices lost");
  flags.Bool("dra-binding-conditions", &o.dra_binding_conditions,
             "DRA: slices ask the scheduler to wait until a device is attached for the chosen node (KEP-5007 "
             "binding conditions; resource.k8s.io/v1 with the DRADeviceBindingConditions gate)");
  rpci::AddLogLevelFlag(flags, &st.log_level);
}

int Run(int argc, char** argv) {
  Settings st;
  rpci::controller::ControllerOptions& o = st.options;
  char host[256] = "rpci-controller";
  gethostname(host, sizeof(host) - 1);
  o.identity = host;
  rpci::FlagSet flags("rpci-controller [flags]",
                      "The rpci pool manager: assigns exported PCIe devices to compute nodes and grants sessions.");
  AddFlags(flags, st);
  if (std::optional<int> exit_code = flags.ParseOrExit(argc, argv)) return *exit_code;
  if (std::optional<int> exit_code = rpci::ApplyLogLevelFlag(st.log_level)) return *exit_code;
  rpci::Logger log("controller");
  o.lease_duration = absl::Seconds(st.lease_duration);
  o.renew_deadline = absl::Seconds(st.renew_deadline);
  o.retry_period = absl::Seconds(st.retry_period);
  o.reconcile_interval = absl::Milliseconds(st.reconcile_ms);
  o.node_lease = absl::Seconds(st.node_lease);
  o.agent_lease = absl::Seconds(st.agent_lease);
  o.node_identity.issue.lifetime = absl::Seconds(st.node_cert_seconds);
  if (!ParseServiceAccounts(st.identity_accounts, o.node_identity.issue.service_accounts)) return 2;

  absl::StatusOr<std::unique_ptr<rpci::controller::ControllerApp>> app =
      rpci::controller::ControllerApp::Create(o);
  if (!app.ok()) return rpci::CannotStart(log, app.status());
  return rpci::ServeUntilTerminated(**app, log);
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
