#include "controller/controller_app.h"

#include <chrono>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config.h"
#include "common/tls.h"
#include "common/tls_settings.h"
#include "controller/crd_codec.h"
#include "controller/kube_store.h"
#include "controller/local_store.h"
#include "grpcpp/grpcpp.h"

namespace rpci::controller {
namespace {

using nlohmann::json;

absl::StatusOr<std::vector<PoolSpec>> PoolsFromFile(const std::string& path) {
  std::vector<PoolSpec> pools;
  if (path.empty()) return pools;
  absl::StatusOr<json> doc = LoadConfigFile(path);
  if (!doc.ok()) return doc.status();
  if (!doc->is_object() || !doc->contains("pools") || !(*doc)["pools"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected a top-level \"pools\" list"));
  }
  for (size_t i = 0; i < (*doc)["pools"].size(); ++i) {
    absl::StatusOr<PoolSpec> p = PoolFromConfig((*doc)["pools"][i], absl::StrCat(path, ": pools[", i, "]"));
    if (!p.ok()) return p.status();
    pools.push_back(*p);
  }
  return pools;
}

std::string NameOf(const json& object) {
  const json meta = object.value("metadata", json::object());
  return meta.is_object() ? meta.value("name", "") : "";
}

// The names in `*seen` that are not in `now`; `*seen` becomes `now`.
std::vector<std::string> Departed(std::set<std::string>* seen, std::set<std::string> now) {
  std::vector<std::string> gone;
  for (const std::string& n : *seen) {
    if (!now.count(n)) gone.push_back(n);
  }
  *seen = std::move(now);
  return gone;
}

// Decisions an admin wants to see as Events on the PcieDevice, and their type.
const std::map<std::string, std::string>& EventTypes() {
  static const auto* types = new std::map<std::string, std::string>{
      {"assign", "Normal"},   {"release", "Normal"},  {"attach", "Normal"},    {"detach", "Normal"},
      {"undrain", "Normal"},  {"reclaim", "Warning"}, {"drain", "Warning"},    {"unhealthy", "Warning"},
      {"healthy", "Normal"},  {"remove", "Normal"},    {"persist-failed", "Warning"}};
  return *types;
}

// The options Create refuses before it opens anything.
absl::Status CheckOptions(const ControllerOptions& options) {
  if (options.store != "local" && options.store != "kube") {
    return absl::InvalidArgumentError(absl::StrCat("--store: must be local or kube, got \"", options.store, "\""));
  }
  // Peers heartbeat at the pool manager's interval; a lease no longer than
  // that would expire live agents and plugins between two heartbeats.
  const absl::Duration heartbeat = PoolManager::Options().heartbeat_interval;
  for (const auto& [flag, lease] : {std::pair<const char*, absl::Duration>{"--agent-lease-seconds", options.agent_lease},
                                    {"--node-lease-seconds", options.node_lease}}) {
    if (lease <= heartbeat) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": must be longer than the ",
                                                     absl::ToInt64Seconds(heartbeat),
                                                     " s heartbeat interval, got ", absl::ToInt64Seconds(lease)));
    }
  }
  return ValidateTlsSettings(options.tls, /*node_identity=*/false);
}

}  // namespace

absl::Status ControllerApp::OpenStore() {
  const ControllerOptions& o = options_;
  if (o.store == "local") {
    absl::StatusOr<std::unique_ptr<LocalStore>> local = LocalStore::Open(o.state_dir, clock_);
    if (!local.ok()) return local.status();
    store_ = *std::move(local);
    return absl::OkStatus();
  }
  absl::StatusOr<kube::KubeConfig> kc = o.kube_config.has_value() ? *o.kube_config
                                        : o.kubeconfig.empty()    ? kube::InClusterConfig()
                                                                  : kube::LoadKubeconfig(o.kubeconfig, o.kube_context);
  if (!kc.ok()) return kc.status();
  absl::StatusOr<std::unique_ptr<kube::KubeClient>> client = kube::KubeClient::Create(*kc);
  if (!client.ok()) return client.status();
  kube_ = *std::move(client);
  ns_ = o.ns.empty() ? kube_->config().ns : o.ns;
  if (ns_.empty()) return absl::InvalidArgumentError("--namespace: empty, and the kube config names none");
  store_ = std::make_unique<KubeStore>(kube_.get(), clock_, ns_);
  resources_ = std::make_unique<ResourceApi>(kube_.get());
  slices_ = std::make_unique<SlicePublisher>(kube_.get(), resources_.get(), o.dra_binding_conditions);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ControllerApp>> ControllerApp::Create(ControllerOptions options, const Clock* clock) {
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  if (options.store == "local") options.leader_elect = false;
  std::unique_ptr<ControllerApp> app(new ControllerApp(std::move(options), clock));
  const ControllerOptions& o = app->options_;
  if (absl::Status s = app->OpenStore(); !s.ok()) return s;
  if (!o.node_identity.listen.empty()) {
    if (o.tls.insecure) return absl::InvalidArgumentError("--identity-listen: needs TLS, not --insecure");
    absl::StatusOr<std::unique_ptr<identity::IdentityServer>> id =
        identity::IdentityServer::Create(o.node_identity, app->kube_.get(), &app->metrics_);
    if (!id.ok()) return id.status();
    app->identity_ = *std::move(id);
  }
  absl::StatusOr<std::vector<PoolSpec>> pools = PoolsFromFile(o.config_file);
  if (!pools.ok()) return pools.status();
  app->file_pools_ = *pools;

  PoolManager::Options mo;
  mo.default_pool.spares_per_node = o.default_spares;
  mo.default_pool.idle_release_seconds = o.default_idle_release_seconds;
  mo.node_lease = o.node_lease;
  mo.agent_lease = o.agent_lease;
  app->manager_ = std::make_unique<PoolManager>(app->store_.get(), clock, mo, &app->metrics_);
  app->manager_->SetPools(app->file_pools_);
  if (o.dra_binding_conditions) {
    if (!app->kube_) return absl::InvalidArgumentError("--dra-binding-conditions: needs --store=kube");
    app->binder_ = std::make_unique<ClaimBinder>(app->kube_.get(), app->resources_.get(), app->manager_.get(), clock);
  }

  if (o.leader_elect) {
    kube::LeaderElector::Options lo;
    lo.ns = o.lease_namespace.empty() ? app->ns_ : o.lease_namespace;
    lo.name = o.lease_name;
    lo.identity = o.identity;
    lo.lease_duration = o.lease_duration;
    lo.renew_deadline = o.renew_deadline;
    lo.retry_period = o.retry_period;
    app->elector_ = std::make_unique<kube::LeaderElector>(app->kube_.get(), clock, lo);
  }
  return app;
}

ControllerApp::ControllerApp(ControllerOptions options, const Clock* clock)
    : options_(std::move(options)), clock_(clock), log_(Logger("controller").With("identity", options_.identity)) {}

ControllerApp::~ControllerApp() { Stop(); }

absl::Status ControllerApp::LeaderCheck() const {
  if (acting_) return absl::OkStatus();
  std::string holder = elector_ ? elector_->holder() : "";
  return absl::UnavailableError(holder.empty() ? "not the leader (no leader yet)"
                                               : "not the leader; leader is " + holder);
}

absl::Status ControllerApp::Start() {
  if (started_.exchange(true)) return absl::FailedPreconditionError("controller already started");
  if (!elector_) {
    // The only replica: load before serving, so the first agent or plugin
    // call is not refused as "not the leader".
    if (absl::Status s = manager_->Load(); !s.ok()) return s;
    acting_ = true;
  }
  if (kube_) StartInformers();

  health_ = std::make_unique<HealthServer>(&metrics_, [this]() -> absl::StatusOr<std::string> {
    if (acting_) return std::string("leader");
    return LeaderCheck();
  });
  std::string hhost;
  int hport = 0;
  if (absl::Status s = ParseHostPort(options_.http_listen, &hhost, &hport); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--http-listen: ", s.message()));
  }
  absl::StatusOr<int> bound = health_->Start(hhost, hport);
  if (!bound.ok()) return bound.status();
  http_port_ = *bound;

  absl::StatusOr<std::unique_ptr<DaemonTls>> tls = DaemonTls::Start(options_.tls, {}, log_);
  if (!tls.ok()) return tls.status();
  tls_ = *std::move(tls);
  std::shared_ptr<grpc::ServerCredentials> creds = tls_->ServerCredentials(ClientCertPolicy::kRequire);
  if (identity_) {
    if (absl::Status s = identity_->Start(tls_->ServerCredentials(ClientCertPolicy::kRequestAndVerifyIfPresent));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = identity_->PublishCaBundle(); !s.ok()) {
      log_.Error("nodes without a CA bundle cannot ask for certificates", {{"error", s.ToString()}});
    }
  }
  ClaimReader claims;
  if (resources_) {
    claims = [this](const std::string& node, const std::string& ns, const std::string& name,
                    const std::string& uid) { return resources_->ReadClaim(node, ns, name, uid); };
  }
  service_ = std::make_unique<ControllerService>(manager_.get(), PeerAuthorizer(!options_.tls.insecure),
                                                 [this] { return LeaderCheck(); }, std::move(claims));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, creds, &grpc_port_);
  builder.RegisterService(service_->agent_registry());
  builder.RegisterService(service_->node_registry());
  server_ = builder.BuildAndStart();
  if (!server_ || grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("gRPC: cannot listen on ", options_.listen));
  }
  log_.Info("serving", {{"grpc_port", grpc_port_}, {"http_port", http_port_}, {"store", options_.store}});
  loop_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void ControllerApp::StartInformers() {
  auto add = [this](const std::string& path, void (ControllerApp::*on_change)(const kube::Informer::Cache&)) {
    informers_.push_back(std::make_unique<kube::Informer>(
        kube_.get(), path, [this, on_change](const kube::Informer::Cache& cache) { (this->*on_change)(cache); }));
    return informers_.back().get();
  };
  pools_informer_ = add(KubeStore::kPoolsPath, &ControllerApp::OnPools);
  add("/api/v1/pods", &ControllerApp::OnPods);
  nodes_informer_ = add("/api/v1/nodes", &ControllerApp::OnNodes);
  devices_informer_ = add(KubeStore::kDevicesPath, &ControllerApp::OnDevices);
  add(KubeStore::AttachmentsIn(ns_), &ControllerApp::OnAttachments);
  for (auto& i : informers_) i->Start();
}

void ControllerApp::OnPools(const kube::Informer::Cache& cache) {
  std::vector<PoolSpec> pools = file_pools_;
  for (const auto& [key, o] : cache) {
    absl::StatusOr<PoolSpec> p = PoolFromObject(o);
    if (!p.ok()) {
      log_.Warn("ignoring invalid DevicePool", {{"pool", key}, {"error", p.status().ToString()}});
      continue;
    }
    pools.push_back(*p);
  }
  manager_->SetPools(pools);
}

void ControllerApp::OnPods(const kube::Informer::Cache& cache) {
  std::vector<PodDemand> demand;
  for (const auto& [key, pod] : cache) {
    for (auto& d : DemandOfPod(pod)) demand.push_back(std::move(d));
  }
  manager_->SetDemand(demand);
}

void ControllerApp::OnNodes(const kube::Informer::Cache& cache) {
  std::set<std::string> now;
  std::map<std::string, std::map<std::string, std::string>> labels;
  for (const auto& [key, node] : cache) {
    const std::string name = NameOf(node);
    now.insert(name);
    const json meta = node.value("metadata", json::object());
    const json l = meta.is_object() ? meta.value("labels", json::object()) : json::object();
    auto& out = labels[name];
    if (!l.is_object()) continue;
    for (auto it = l.begin(); it != l.end(); ++it) {
      if (it->is_string()) out[it.key()] = it->get<std::string>();
    }
  }
  std::vector<std::string> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    gone = Departed(&known_nodes_, std::move(now));
  }
  // A standby must not write: its state is rebuilt (and these re-applied)
  // when it takes over.
  if (!acting_) return;
  manager_->SetNodeLabels(labels);
  for (const std::string& n : gone) manager_->NodeGone(n);
}

void ControllerApp::OnDevices(const kube::Informer::Cache& cache) {
  if (!acting_) return;
  std::map<std::string, bool> drains;
  for (const auto& [key, o] : cache) drains[NameOf(o)] = DrainRequested(o);
  manager_->SetDrainRequests(drains);
}

void ControllerApp::OnAttachments(const kube::Informer::Cache& cache) {
  std::set<std::string> now;
  for (const auto& [key, o] : cache) now.insert(NameOf(o));
  std::vector<std::string> deleted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    deleted = Departed(&seen_attachments_, std::move(now));
  }
  if (!acting_) return;
  // Only objects seen and then gone count: one the manager has just created
  // may not have reached this cache yet. A grant the manager itself detached
  // is already gone from it, so this is a no-op then.
  for (const std::string& g : deleted) {
    if (absl::Status s = manager_->AttachmentDeleted(g); !s.ok()) {
      log_.Warn("cannot detach deleted DeviceAttachment", {{"grant", g}, {"error", s.ToString()}});
    }
  }
}

void ControllerApp::Loop() {
  absl::Time next_lease = absl::InfinitePast();
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    if (elector_ && clock_->Now() >= next_lease) {
      elector_->TryAcquireOrRenew();
      next_lease = clock_->Now() + options_.retry_period;
    }
    Step();
    std::unique_lock<std::mutex> lock(mu_);
    wake_.wait_for(lock, absl::ToChronoMilliseconds(options_.reconcile_interval), [this] { return stop_; });
  }
}

void ControllerApp::Step() {
  const bool leading = elector_ ? elector_->is_leader() : true;
  if (leading && !acting_) {
    // Rebuild from the store on every takeover: the previous leader's
    // decisions are in there.
    if (absl::Status s = manager_->Load(); !s.ok()) {
      log_.Error("cannot load state; not acting yet", {{"error", s.ToString()}});
      return;
    }
    acting_ = true;
    log_.Info("acting as leader");
    if (nodes_informer_ != nullptr) OnNodes(nodes_informer_->Snapshot());
    if (devices_informer_ != nullptr) OnDevices(devices_informer_->Snapshot());
  } else if (!leading && acting_) {
    acting_ = false;
    log_.Warn("lost leadership; standing by");
  }
  if (!acting_) {
    manager_->TakeDecisions();
    return;
  }
  manager_->Reconcile();
  PostEvents(manager_->TakeDecisions());
  WritePoolStatus();
  PublishSlices();
  WatchClaimAllocations();
  if (binder_ && claims_informer_ != nullptr && claims_informer_->synced()) {
    absl::Status s = binder_->Sync(claims_informer_->Snapshot());
    if (!s.ok()) log_.Warn("binding conditions", {{"error", s.ToString()}});
  }
}

void ControllerApp::WatchClaimAllocations() {
  if (!resources_ || claims_informer_ != nullptr) return;
  bool both = false;
  for (const PoolSpec& p : manager_->DraPools()) both |= p.allocation_mode == AllocationMode::kBoth;
  if (!both && !binder_) return;
  absl::StatusOr<std::string> prefix = resources_->Prefix();
  if (!prefix.ok()) return;  // PublishSlices logs why
  informers_.push_back(std::make_unique<kube::Informer>(
      kube_.get(), absl::StrCat(*prefix, "/resourceclaims"),
      [this](const kube::Informer::Cache& cache) { manager_->SetClaimAllocations(RpciAllocations(cache)); }));
  claims_informer_ = informers_.back().get();
  claims_informer_->Start();
}

void ControllerApp::PublishSlices() {
  if (!slices_) return;
  std::map<std::string, std::string> owners;  // DevicePool uids
  if (pools_informer_ != nullptr) {
    for (const auto& [key, o] : pools_informer_->Snapshot()) owners[NameOf(o)] = o["metadata"].value("uid", "");
  }
  const std::map<std::string, PoolOffer> offers = DraOffers(*manager_, owners);
  // Listing the slices on every step would load the API server: sync when
  // the offer changed, and every 30 s (5 s after an error) to repair drift.
  std::string digest;
  for (const auto& [pool, o] : offers) {
    absl::StrAppend(&digest, pool, "|", o.owner_uid, "|", absl::StrJoin(o.nodes, ","), "|");
    for (const auto& d : o.devices) absl::StrAppend(&digest, d.SerializeAsString(), ";");
  }
  const absl::Time now = clock_->Now();
  if (digest == slices_digest_ && now < next_slice_sync_) return;
  slices_digest_ = digest;
  absl::Status s = slices_->Sync(offers);
  next_slice_sync_ = now + (s.ok() ? absl::Seconds(30) : absl::Seconds(5));
  if (!s.ok()) log_.Warn("cannot publish ResourceSlices", {{"error", s.ToString()}});
}

void ControllerApp::WritePoolStatus() {
  if (!kube_ || pools_informer_ == nullptr) return;
  const std::map<std::string, std::map<std::string, int64_t>> counts = manager_->PhaseCounts();
  static const std::map<std::string, int64_t> kNone;
  for (const auto& [key, pool] : pools_informer_->Snapshot()) {
    const std::string name = NameOf(pool);
    auto it = counts.find(name);
    const std::map<std::string, int64_t>& phases = it == counts.end() ? kNone : it->second;
    if (pool.value("status", json::object()) == PoolStatus(pool, phases, clock_->Now())) continue;
    absl::StatusOr<json> r =
        kube_->ReadModifyWrite(absl::StrCat(KubeStore::kPoolsPath, "/", name), true, [&](json& o) {
          json next = PoolStatus(o, phases, clock_->Now());
          if (o.value("status", json::object()) == next) return false;
          o["status"] = std::move(next);
          return true;
        });
    if (!r.ok()) log_.Warn("cannot write DevicePool status", {{"pool", name}, {"error", r.status().ToString()}});
  }
}

void ControllerApp::PostEvents(const std::vector<Decision>& decisions) {
  if (!kube_) return;
  for (const Decision& d : decisions) {
    auto type = EventTypes().find(d.action);
    if (type == EventTypes().end()) continue;
    json ref = {{"apiVersion", kApiVersion}, {"kind", "PcieDevice"}, {"metadata", {{"name", d.device_id}}}};
    std::string message = absl::StrCat(d.action, " ", d.device_id);
    if (!d.node.empty()) absl::StrAppend(&message, " node ", d.node);
    if (!d.detail.empty()) absl::StrAppend(&message, " (", d.detail, ")");
    absl::Status s = kube_->PostEvent(ref, type->second, d.reason, message, "rpci-controller");
    if (!s.ok()) log_.Debug("event not posted", {{"error", s.ToString()}});
  }
}

void ControllerApp::Stop(bool release_lease) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
    release_on_stop_ = release_lease;
  }
  wake_.notify_all();
  if (loop_.joinable()) loop_.join();
  if (service_) service_->Shutdown();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (identity_) identity_->Stop();
  for (auto& i : informers_) i->Stop();
  if (elector_ && release_on_stop_) (void)elector_->Release();
  acting_ = false;
  if (health_) health_->Stop();
  log_.Info("stopped", {{"released_lease", release_lease}});
}

}  // namespace rpci::controller
