// rpci-controller: wires flags, store, leader election, cluster watches, the
// reconcile loop, the gRPC services and the health endpoint together.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/flags.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "controller/crd_codec.h"
#include "controller/kube/client.h"
#include "controller/kube/informer.h"
#include "controller/kube/leader_election.h"
#include "controller/kube_store.h"
#include "controller/local_store.h"
#include "controller/pool_manager.h"
#include "controller/service.h"
#include "grpcpp/grpcpp.h"

namespace {

using nlohmann::json;
using rpci::controller::PoolSpec;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

absl::StatusOr<std::vector<PoolSpec>> PoolsFromFile(const std::string& path) {
  std::vector<PoolSpec> pools;
  if (path.empty()) return pools;
  absl::StatusOr<json> doc = rpci::LoadConfigFile(path);
  if (!doc.ok()) return doc.status();
  if (!doc->is_object() || !doc->contains("pools") || !(*doc)["pools"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected a top-level \"pools\" list"));
  }
  for (size_t i = 0; i < (*doc)["pools"].size(); ++i) {
    absl::StatusOr<PoolSpec> p = rpci::controller::PoolFromConfig((*doc)["pools"][i], absl::StrCat(path, ": pools[", i, "]"));
    if (!p.ok()) return p.status();
    pools.push_back(*p);
  }
  return pools;
}

int Run(int argc, char** argv) {
  std::string store_kind = "local", state_dir = "/var/lib/rpci-controller", kubeconfig, config_file;
  std::string listen = "0.0.0.0:7400", http_listen = "0.0.0.0:7401";
  std::string tls_cert, tls_key, tls_ca, log_level = "info";
  bool insecure = false, leader_elect = true;
  char host[256] = "rpci-controller";
  gethostname(host, sizeof(host) - 1);
  std::string identity = host, lease_name = "rpci-controller", lease_namespace;
  int64_t lease_duration = 15, renew_deadline = 10, retry_period = 2, reconcile_ms = 1000, default_spares = 1;
  int64_t node_lease = 30, agent_lease = 30, idle_release = 0;

  rpci::FlagSet flags("rpci-controller [flags]",
                      "The rpci pool manager: assigns exported PCIe devices to compute nodes and grants sessions.");
  flags.String("store", &store_kind, "where state lives: local (files in --state-dir) or kube (rpci.io CRDs)");
  flags.String("state-dir", &state_dir, "state directory of the local store");
  flags.String("kubeconfig", &kubeconfig, "kubeconfig file (--store=kube); empty: in-cluster service account");
  flags.String("config", &config_file, "YAML/JSON file with a `pools:` list (local store; kube reads DevicePools)");
  flags.String("listen", &listen, "gRPC address for agents and plugins");
  flags.String("http-listen", &http_listen, "address of /healthz, /readyz, /metrics");
  flags.String("tls-cert", &tls_cert, "PEM certificate (common name \"controller\")");
  flags.String("tls-key", &tls_key, "PEM private key");
  flags.String("tls-ca", &tls_ca, "PEM CA bundle that signs agent and plugin certificates");
  flags.Bool("insecure", &insecure, "plaintext gRPC without peer authentication (demo only)");
  flags.Bool("leader-elect", &leader_elect, "elect a leader on a coordination.k8s.io Lease (--store=kube)");
  flags.String("identity", &identity, "this replica's name in the Lease");
  flags.String("lease-name", &lease_name, "Lease name");
  flags.String("lease-namespace", &lease_namespace, "Lease namespace (default: the service account's)");
  flags.Int("lease-duration-seconds", &lease_duration, "how long a silent leader keeps the Lease");
  flags.Int("renew-deadline-seconds", &renew_deadline, "a leader that cannot renew this long steps down");
  flags.Int("retry-period-seconds", &retry_period, "between Lease attempts");
  flags.Int("reconcile-interval-ms", &reconcile_ms, "between policy passes");
  flags.Int("default-spares", &default_spares, "spares per node for pools no DevicePool defines");
  flags.Int("default-idle-release-seconds", &idle_release, "idle release for pools no DevicePool defines (0: never)");
  flags.Int("node-lease-seconds", &node_lease, "a plugin silent this long makes its node dead");
  flags.Int("agent-lease-seconds", &agent_lease, "an agent silent this long makes its devices lost");
  flags.String("log-level", &log_level, "debug, info, warn or error");
  absl::StatusOr<std::vector<std::string>> args = flags.Parse(argc, argv);
  if (!args.ok()) {
    std::cerr << args.status().message() << "\n" << flags.Help();
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Help();
    return 0;
  }
  flags.Apply();
  rpci::LogLevel level;
  if (!rpci::ParseLogLevel(log_level, &level)) {
    std::cerr << "--log-level: unknown level \"" << log_level << "\"\n";
    return 2;
  }
  rpci::Logger::SetMinLevel(level);
  rpci::Logger log("controller");
  if (store_kind != "local" && store_kind != "kube") {
    log.Error("bad flag", {{"flag", "store"}, {"error", "must be local or kube, got \"" + store_kind + "\""}});
    return 2;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);

  const rpci::Clock* clock = rpci::Clock::Real();
  rpci::MetricsRegistry metrics;
  std::unique_ptr<rpci::kube::KubeClient> kube;
  std::unique_ptr<rpci::controller::Store> store;
  if (store_kind == "kube") {
    absl::StatusOr<rpci::kube::KubeConfig> kc =
        kubeconfig.empty() ? rpci::kube::InClusterConfig() : rpci::kube::LoadKubeconfig(kubeconfig);
    if (!kc.ok()) {
      log.Error("cannot configure the Kubernetes client", {{"error", kc.status().ToString()}});
      return 1;
    }
    if (lease_namespace.empty()) lease_namespace = kc->ns;
    absl::StatusOr<std::unique_ptr<rpci::kube::KubeClient>> client = rpci::kube::KubeClient::Create(*kc);
    if (!client.ok()) {
      log.Error("cannot create the Kubernetes client", {{"error", client.status().ToString()}});
      return 1;
    }
    kube = *std::move(client);
    store = std::make_unique<rpci::controller::KubeStore>(kube.get(), clock);
  } else {
    absl::StatusOr<std::unique_ptr<rpci::controller::LocalStore>> local =
        rpci::controller::LocalStore::Open(state_dir, clock);
    if (!local.ok()) {
      log.Error("cannot open the local store", {{"error", local.status().ToString()}});
      return 1;
    }
    store = *std::move(local);
    leader_elect = false;
  }

  rpci::controller::PoolManager::Options options;
  options.default_pool.spares_per_node = default_spares;
  options.default_pool.idle_release_seconds = idle_release;
  options.node_lease = absl::Seconds(node_lease);
  options.agent_lease = absl::Seconds(agent_lease);
  rpci::controller::PoolManager manager(store.get(), clock, options, &metrics);
  absl::StatusOr<std::vector<PoolSpec>> file_pools = PoolsFromFile(config_file);
  if (!file_pools.ok()) {
    log.Error("bad config", {{"error", file_pools.status().ToString()}});
    return 2;
  }
  manager.SetPools(*file_pools);

  std::unique_ptr<rpci::kube::LeaderElector> elector;
  if (leader_elect) {
    rpci::kube::LeaderElector::Options lo;
    lo.ns = lease_namespace;
    lo.name = lease_name;
    lo.identity = identity;
    lo.lease_duration = absl::Seconds(lease_duration);
    lo.renew_deadline = absl::Seconds(renew_deadline);
    lo.retry_period = absl::Seconds(retry_period);
    elector = std::make_unique<rpci::kube::LeaderElector>(kube.get(), clock, lo);
  }
  // Acting state: true once this replica leads and has loaded the store.
  std::atomic<bool> acting{false};
  auto leader_check = [&]() -> absl::Status {
    if (acting) return absl::OkStatus();
    std::string holder = elector ? elector->holder() : "";
    return absl::UnavailableError(holder.empty() ? "not the leader (no leader yet)"
                                                 : "not the leader; leader is " + holder);
  };

  std::vector<std::unique_ptr<rpci::kube::Informer>> informers;
  if (kube) {
    informers.push_back(std::make_unique<rpci::kube::Informer>(
        kube.get(), rpci::controller::KubeStore::kPoolsPath, [&](const rpci::kube::Informer::Cache& cache) {
          std::vector<PoolSpec> pools = *file_pools;
          for (const auto& [key, o] : cache) {
            absl::StatusOr<PoolSpec> p = rpci::controller::PoolFromObject(o);
            if (!p.ok()) {
              log.Warn("ignoring invalid DevicePool", {{"pool", key}, {"error", p.status().ToString()}});
              continue;
            }
            pools.push_back(*p);
          }
          manager.SetPools(pools);
        }));
    informers.push_back(std::make_unique<rpci::kube::Informer>(
        kube.get(), "/api/v1/pods", [&](const rpci::kube::Informer::Cache& cache) {
          std::vector<rpci::controller::PodDemand> demand;
          for (const auto& [key, pod] : cache) {
            for (auto& d : rpci::controller::DemandOfPod(pod)) demand.push_back(std::move(d));
          }
          manager.SetDemand(demand);
        }));
    auto known_nodes = std::make_shared<std::set<std::string>>();
    informers.push_back(std::make_unique<rpci::kube::Informer>(
        kube.get(), "/api/v1/nodes", [&, known_nodes](const rpci::kube::Informer::Cache& cache) {
          std::set<std::string> now;
          for (const auto& [key, node] : cache) now.insert(node["metadata"].value("name", ""));
          for (const std::string& n : *known_nodes) {
            if (!now.count(n) && acting) manager.NodeGone(n);
          }
          *known_nodes = now;
        }));
    for (auto& i : informers) i->Start();
  }

  rpci::HealthServer health(&metrics, [&]() -> absl::StatusOr<std::string> {
    if (acting) return std::string("leader");
    return leader_check();
  });
  std::string hhost;
  int hport = 0;
  if (absl::Status s = rpci::ParseHostPort(http_listen, &hhost, &hport); !s.ok()) {
    log.Error("bad flag", {{"flag", "http-listen"}, {"error", s.ToString()}});
    return 2;
  }
  if (absl::StatusOr<int> bound = health.Start(hhost, hport); !bound.ok()) {
    log.Error("cannot serve health", {{"error", bound.status().ToString()}});
    return 1;
  }

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (insecure) {
    log.Warn("serving gRPC without TLS: any caller may speak for any node");
    creds = grpc::InsecureServerCredentials();
  } else {
    absl::StatusOr<rpci::TlsMaterial> tls = rpci::LoadTlsMaterial({tls_cert, tls_key, tls_ca});
    if (!tls.ok()) {
      log.Error("cannot load TLS material (or pass --insecure)", {{"error", tls.status().ToString()}});
      return 1;
    }
    creds = rpci::MakeServerCredentials(*tls);
  }
  rpci::controller::ControllerService service(&manager, rpci::controller::PeerAuthorizer(!insecure), leader_check);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, creds, &port);
  builder.RegisterService(service.agent_registry());
  builder.RegisterService(service.node_registry());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    log.Error("cannot listen", {{"address", listen}});
    return 1;
  }
  log.Info("serving", {{"grpc", listen}, {"port", port}, {"http", http_listen}, {"store", store_kind}});

  absl::Time next_lease = absl::InfinitePast();
  while (!g_stop) {
    bool leading = true;
    if (elector && clock->Now() >= next_lease) {
      elector->TryAcquireOrRenew();
      next_lease = clock->Now() + absl::Seconds(retry_period);
    }
    if (elector) leading = elector->is_leader();
    if (leading && !acting) {
      // Rebuild from the store on every takeover: the previous leader's
      // decisions are in there.
      if (absl::Status s = manager.Load(); !s.ok()) {
        log.Error("cannot load state; not acting yet", {{"error", s.ToString()}});
      } else {
        acting = true;
        log.Info("acting as leader", {{"identity", identity}});
      }
    } else if (!leading && acting) {
      acting = false;
      log.Warn("lost leadership; standing by", {{"identity", identity}});
    }
    if (acting) {
      for (const auto& d : manager.Reconcile()) {
        if (!kube || (d.action != "assign" && d.action != "release" && d.action != "reclaim")) continue;
        json ref = {{"apiVersion", rpci::controller::kApiVersion},
                    {"kind", "PcieDevice"},
                    {"metadata", {{"name", d.device_id}}}};
        absl::Status s = kube->PostEvent(ref, d.action == "assign" ? "Normal" : "Warning", d.reason,
                                         absl::StrCat(d.action, " ", d.device_id, " node ", d.node), "rpci-controller");
        if (!s.ok()) log.Debug("event not posted", {{"error", s.ToString()}});
      }
    }
    clock->SleepFor(absl::Milliseconds(reconcile_ms));
  }
  log.Info("shutting down");
  service.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  for (auto& i : informers) i->Stop();
  if (elector) (void)elector->Release();
  health.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
