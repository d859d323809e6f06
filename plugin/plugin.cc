#include "plugin/plugin.h"

#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/grpc_util.h"
#include "common/map_keys.h"
#include "common/unix_grpc.h"
#include "plugin/container_edits.h"
#include "plugin/preferred.h"
#include "third_party/kubelet/podresources/v1/api.grpc.pb.h"

namespace rpci::plugin {
namespace {

absl::Status Prefixed(const absl::Status& s, const std::string& prefix) {
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

std::string AllocationName() {
  std::random_device rd;
  std::string bytes(6, '\0');
  for (char& c : bytes) c = static_cast<char>(rd() & 0xff);
  return "alloc-" + absl::BytesToHexString(bytes);
}

}  // namespace

absl::Status CheckPoolName(const std::string& pool) {
  if (pool.empty() || pool.find_first_of("/=:, ") != std::string::npos) {
    return absl::InvalidArgumentError("plugin: invalid pool name \"" + pool + "\"");
  }
  return absl::OkStatus();
}

absl::Status CheckNodeAndPools(const std::string& node, const std::vector<std::string>& pools, absl::string_view kind) {
  if (node.empty()) return absl::InvalidArgumentError("plugin: node name is empty");
  if (pools.empty()) return absl::InvalidArgumentError(absl::StrCat("plugin: no ", kind));
  for (const std::string& pool : pools) {
    if (absl::Status s = CheckPoolName(pool); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ParsePools(const std::string& text, PluginOptions* options) {
  options->pools.clear();
  options->dra_pools.clear();
  for (absl::string_view entry : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::vector<std::string> parts = absl::StrSplit(absl::StripAsciiWhitespace(entry), ':');
    const std::string mode = parts.size() > 1 ? parts[1] : "device-plugin";
    if (parts.size() > 2 || !CheckPoolName(parts[0]).ok()) {
      return absl::InvalidArgumentError(absl::StrCat("pool \"", entry, "\": want <pool>[:device-plugin|dra|both]"));
    }
    if (mode != "device-plugin" && mode != "dra" && mode != "both") {
      return absl::InvalidArgumentError(
          absl::StrCat("pool \"", entry, "\": mode \"", mode, "\" is not device-plugin, dra or both"));
    }
    if (mode != "dra") options->pools.push_back(parts[0]);
    if (mode != "device-plugin") options->dra_pools.push_back(parts[0]);
  }
  if (options->pools.empty() && options->dra_pools.empty()) return absl::InvalidArgumentError("no pools");
  return absl::OkStatus();
}

absl::Status ParseCdiMode(const std::string& text, PluginOptions* options) {
  if (text == "off") {
    options->device_edits = DeviceEditsVia::kAllocateResponse;
  } else if (text == "on") {
    options->device_edits = DeviceEditsVia::kCdi;
  } else {
    return absl::InvalidArgumentError("cdi: \"" + text + "\" is not on or off");
  }
  return absl::OkStatus();
}

absl::Status ParseFabricPortRange(const std::string& text, PluginOptions* options) {
  options->fabric_port_low = options->fabric_port_high = 0;
  if (text.empty()) return absl::OkStatus();
  std::vector<std::string> parts = absl::StrSplit(text, '-');
  int low = 0, high = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &low) || !absl::SimpleAtoi(parts[1], &high) || low < 1 ||
      high > 65535 || low > high) {
    return absl::InvalidArgumentError(absl::StrCat("fabric port range \"", text, "\": want LOW-HIGH within 1-65535"));
  }
  options->fabric_port_low = low;
  options->fabric_port_high = high;
  return absl::OkStatus();
}

// ---------------------------------------------------------------- plugin

Plugin::Plugin(PluginOptions options, ControllerApi* controller, SessionOpener* sessions)
    : options_(std::move(options)),
      controller_(controller),
      sessions_(sessions) {
  if (options_.metrics == nullptr) own_metrics_ = std::make_unique<MetricsRegistry>();
  metrics_ = options_.metrics ? options_.metrics : own_metrics_.get();
  allocations_ = &metrics_->AddCounter("rpci_plugin_allocations_total", "Allocate calls by pool and result",
                                       {"pool", "result"});
  sessions_gauge_ = &metrics_->AddGauge("rpci_plugin_sessions", "Sessions held for containers").Get();
  Counter* kubelet_registrations =
      &metrics_->AddCounter("rpci_plugin_kubelet_registrations_total", "Successful registrations with the kubelet")
           .Get();
  EndpointHandler* handler = this;  // a private base: converted here, where it is accessible
  endpoint_ = std::make_unique<KubeletEndpoint>(options_.plugin_dir, options_.pools, handler, kubelet_registrations);
}

Plugin::~Plugin() { Stop(); }

absl::Status Plugin::Start() {
  if (absl::Status s = CheckNodeAndPools(options_.node_name, options_.pools, "pools"); !s.ok()) return s;
  if (absl::Status s = endpoint_->Start(); !s.ok()) return s;
  stopping_ = false;
  threads_.emplace_back([this] { HealthLoop(); });
  threads_.emplace_back([this] { UsageLoop(); });
  return absl::OkStatus();
}

void Plugin::Stop() {
  {
    std::lock_guard<std::mutex> lock(loop_mu_);
    if (stopping_.exchange(true)) return;
  }
  loop_cv_.notify_all();
  changed_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  endpoint_->Stop();
}

// ---------------------------------------------------------------- state

void Plugin::SetAssignments(const rpci::v1::AssignmentSet& set) {
  std::map<std::string, rpci::v1::Assignment> next;
  for (const rpci::v1::Assignment& a : set.assignments()) next[a.device().id()] = a;
  std::lock_guard<std::mutex> lock(mu_);
  assignments_ = std::move(next);
  ++version_;
  changed_.notify_all();
}

uint64_t Plugin::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

uint64_t Plugin::WaitForChange(uint64_t seen, absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return version_ != seen || stopping_; });
  return version_;
}

bool Plugin::Healthy(const rpci::v1::Assignment& a) const {
  if (a.device().health() == rpci::v1::DEVICE_HEALTH_UNHEALTHY) return false;
  if (auto it = agent_ok_.find(a.agent_session_endpoint()); it != agent_ok_.end() && !it->second) return false;
  if (auto it = held_.find(a.device().id()); it != held_.end() && !it->second.live) return false;
  return true;
}

v1beta1::ListAndWatchResponse Plugin::DeviceList(const std::string& pool) const {
  std::lock_guard<std::mutex> lock(mu_);
  v1beta1::ListAndWatchResponse resp;
  for (const auto& [id, a] : assignments_) {
    if (a.device().pool() != pool) continue;
    v1beta1::Device* d = resp.add_devices();
    d->set_id(id);
    d->set_health(Healthy(a) ? "Healthy" : "Unhealthy");
    if (options_.nic_numa_node >= 0) d->mutable_topology()->add_nodes()->set_id(options_.nic_numa_node);
  }
  return resp;
}

std::vector<std::string> Plugin::SessionDevices() const {
  std::lock_guard<std::mutex> lock(mu_);
  return KeysOf(held_);
}

// ---------------------------------------------------------------- RPCs

absl::StatusOr<v1beta1::PreferredAllocationResponse> Plugin::Prefer(
    const std::string& pool, const v1beta1::PreferredAllocationRequest& req) const {
  v1beta1::PreferredAllocationResponse resp;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& creq : req.container_requests()) {
    if (creq.allocation_size() < 0 || creq.allocation_size() > creq.available_deviceids_size()) {
      return absl::InvalidArgumentError(absl::StrCat("GetPreferredAllocation ", ResourceName(pool), ": size ",
                                                     creq.allocation_size(), " of ",
                                                     creq.available_deviceids_size(), " available"));
    }
    std::vector<Candidate> candidates;
    for (const std::string& id : creq.available_deviceids()) {
      auto it = assignments_.find(id);
      if (it == assignments_.end()) {
        candidates.push_back({id, "", 99});  // unknown to us: last
      } else {
        candidates.push_back({id, it->second.device().node(), LocalityRank(it->second)});
      }
    }
    std::vector<std::string> must(creq.must_include_deviceids().begin(), creq.must_include_deviceids().end());
    auto* out = resp.add_container_responses();
    for (const std::string& id : PreferDevices(candidates, must, creq.allocation_size())) out->add_deviceids(id);
  }
  return resp;
}

void Plugin::ReleaseHeld(const Held& held, const std::string& reason) {
  const AttachedSession& s = held.session;
  if (!s.ticket.session_id.empty()) {
    if (absl::Status st = sessions_->Close(s); !st.ok()) {
      log_.Warn("close session failed", {{"device", s.device_id}, {"error", std::string(st.message())}});
    }
  }
  if (!s.grant_id.empty()) {
    rpci::v1::ReleaseRequest rel;
    rel.set_node(options_.node_name);
    rel.set_device_id(s.device_id);
    rel.set_grant_id(s.grant_id);
    rel.set_reason(reason);
    if (absl::Status st = controller_->Release(rel); !st.ok()) {
      log_.Warn("release failed", {{"device", s.device_id}, {"error", std::string(st.message())}});
    }
  }
  RemoveCdiSpec(options_.cdi_dir, held.pool, s.device_id).IgnoreError();
  RemoveSessionDir(PathsFor(options_.state_dir, options_.container_dir, s.device_id)).IgnoreError();
  log_.Info("released device", {{"device", s.device_id}, {"session", s.ticket.session_id.ToString()}, {"reason", reason}});
}

absl::StatusOr<rpci::v1::ClaimResponse> Plugin::ClaimFor(const std::string& device_id,
                                                         const std::string& allocation) {
  rpci::v1::ClaimRequest claim;
  claim.set_node(options_.node_name);
  claim.set_device_id(device_id);
  // Allocate does not say which pod: the claim is for this allocation (no
  // namespace), and the usage report names the pod once pod-resources lists
  // it.
  claim.set_pod_name(allocation);
  absl::StatusOr<rpci::v1::ClaimResponse> granted = controller_->Claim(claim);
  if (!granted.ok() && granted.status().code() == absl::StatusCode::kFailedPrecondition) {
    // Attached to an earlier allocation on this node that we no longer hold
    // (e.g. the plugin restarted): release it and claim again.
    rpci::v1::ReleaseRequest rel;
    rel.set_node(options_.node_name);
    rel.set_device_id(device_id);
    rel.set_reason("StaleAllocation");
    if (controller_->Release(rel).ok()) granted = controller_->Claim(claim);
  }
  return granted;
}

v1beta1::ContainerAllocateResponse Plugin::ContainerResponse(const std::string& pool,
                                                             const std::vector<AttachedSession>& sessions,
                                                             const std::vector<SessionPaths>& paths) const {
  v1beta1::ContainerAllocateResponse c = BuildContainerResponse(pool, sessions, paths, options_.device_edits);
  if (options_.fabric_port_low > 0) {
    (*c.mutable_envs())["FI_TCP_PORT_LOW_RANGE"] = std::to_string(options_.fabric_port_low);
    (*c.mutable_envs())["FI_TCP_PORT_HIGH_RANGE"] = std::to_string(options_.fabric_port_high);
  }
  return c;
}

// One Allocate call in progress: the devices it reserved and the sessions
// it has acquired so far (released when it fails).
struct Plugin::Allocation {
  std::string pool;
  std::string what;  // error prefix: "Allocate rpci.io/<pool>: "
  std::string name;  // the claims' allocation id
  std::vector<std::string> ids;
  std::map<std::string, rpci::v1::Assignment> assigned;
  std::vector<Held> done;
};

absl::Status Plugin::ValidateAllocate(const v1beta1::AllocateRequest& req, Allocation& alloc) {
  std::vector<Held> stale;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string> seen;
    for (const auto& creq : req.container_requests()) {
      if (creq.devices_ids().empty()) {
        return absl::InvalidArgumentError(alloc.what + "a container request names no device");
      }
      for (const std::string& id : creq.devices_ids()) {
        auto it = assignments_.find(id);
        if (it == assignments_.end() || it->second.device().pool() != alloc.pool) {
          allocations_->Labels({alloc.pool, "rejected"}).Increment();
          return absl::InvalidArgumentError(absl::StrCat(alloc.what, "device ", id, " is not assigned to node ",
                                                         options_.node_name, " in pool ", alloc.pool));
        }
        if (!seen.insert(id).second || allocating_.count(id)) {
          allocations_->Labels({alloc.pool, "rejected"}).Increment();
          return absl::FailedPreconditionError(absl::StrCat(alloc.what, "device ", id, " is requested twice"));
        }
        alloc.assigned[id] = it->second;
        alloc.ids.push_back(id);
      }
    }
    // The kubelet only hands out devices it considers free: a session still
    // held for one belongs to a pod that is gone.
    for (const std::string& id : alloc.ids) {
      if (auto it = held_.find(id); it != held_.end()) {
        stale.push_back(std::move(it->second));
        held_.erase(it);
      }
      allocating_.insert(id);
    }
  }
  for (const Held& h : stale) ReleaseHeld(h, "Reallocated");
  return absl::OkStatus();
}

absl::Status Plugin::AttachDevice(const std::string& id, int index, Allocation& alloc,
                                  std::vector<AttachedSession>& sessions, std::vector<SessionPaths>& paths) {
  const rpci::v1::Assignment& a = alloc.assigned[id];
  absl::StatusOr<rpci::v1::ClaimResponse> granted = ClaimFor(id, alloc.name);
  if (!granted.ok()) return granted.status();
  Held h;
  h.pool = alloc.pool;
  h.allocated = absl::Now();
  h.session.device_id = id;
  h.session.grant_id = granted->grant().grant_id();
  alloc.done.push_back(h);
  const std::string endpoint =
      granted->agent_session_endpoint().empty() ? a.agent_session_endpoint() : granted->agent_session_endpoint();
  absl::StatusOr<AttachedSession> opened = sessions_->Open(granted->grant(), endpoint);
  if (!opened.ok()) return opened.status();
  if (opened->ticket.fabric_provider.empty()) opened->ticket.fabric_provider = a.agent_fabric_provider();
  opened->ca_pem = options_.session_ca_pem;
  alloc.done.back().session = *opened;
  absl::StatusOr<std::vector<std::string>> nodes =
      SessionDeviceNodes(opened->ticket.fabric_provider, opened->ticket.endpoint, options_.sysfs_root);
  if (!nodes.ok()) return absl::Status(nodes.status().code(), absl::StrCat("device ", id, ": ", nodes.status().message()));
  opened->device_nodes = *std::move(nodes);
  SessionPaths p = PathsFor(options_.state_dir, options_.container_dir, id);
  if (absl::Status s = WriteSessionDir(*opened, p, static_cast<int>(options_.session_group)); !s.ok()) return s;
  if (options_.device_edits == DeviceEditsVia::kCdi) {
    if (absl::Status s = WriteCdiSpec(options_.cdi_dir, alloc.pool, index, *opened, p); !s.ok()) return s;
  }
  sessions.push_back(*opened);
  paths.push_back(p);
  return absl::OkStatus();
}

absl::Status Plugin::RollBackAllocate(const Allocation& alloc, const absl::Status& cause) {
  for (const Held& h : alloc.done) ReleaseHeld(h, "AllocateFailed");
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& id : alloc.ids) allocating_.erase(id);
  ++version_;
  changed_.notify_all();
  allocations_->Labels({alloc.pool, "failed"}).Increment();
  log_.Warn("allocate failed", {{"pool", alloc.pool}, {"error", std::string(cause.message())}});
  return Prefixed(cause, alloc.what);
}

void Plugin::CommitAllocate(Allocation& alloc) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Held& h : alloc.done) held_[h.session.device_id] = std::move(h);
  for (const std::string& id : alloc.ids) allocating_.erase(id);
  sessions_gauge_->Set(static_cast<double>(held_.size()));
  ++version_;
  changed_.notify_all();
  allocations_->Labels({alloc.pool, "ok"}).Increment();
  log_.Info("allocated", {{"pool", alloc.pool}, {"devices", absl::StrJoin(alloc.ids, ",")}});
}

absl::StatusOr<v1beta1::AllocateResponse> Plugin::Allocate(const std::string& pool,
                                                           const v1beta1::AllocateRequest& req) {
  Allocation alloc;
  alloc.pool = pool;
  alloc.what = "Allocate " + ResourceName(pool) + ": ";
  if (absl::Status s = ValidateAllocate(req, alloc); !s.ok()) return s;
  alloc.name = AllocationName();
  v1beta1::AllocateResponse resp;
  for (const auto& creq : req.container_requests()) {
    std::vector<AttachedSession> sessions;
    std::vector<SessionPaths> paths;
    for (const std::string& id : creq.devices_ids()) {
      absl::Status s = AttachDevice(id, static_cast<int>(sessions.size()), alloc, sessions, paths);
      if (!s.ok()) return RollBackAllocate(alloc, s);
    }
    *resp.add_container_responses() = ContainerResponse(pool, sessions, paths);
  }
  CommitAllocate(alloc);
  return resp;
}

absl::Status Plugin::PreStart(const std::string& pool, const v1beta1::PreStartContainerRequest& req) {
  const std::string what = "PreStartContainer " + ResourceName(pool) + ": ";
  for (const std::string& id : req.devices_ids()) {
    AttachedSession s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = held_.find(id);
      if (it == held_.end()) {
        return absl::FailedPreconditionError(absl::StrCat(what, "device ", id, " has no session on this node"));
      }
      s = it->second.session;
    }
    if (absl::Status st = sessions_->Check(s); !st.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = held_.find(id); it != held_.end() && it->second.live) {
        it->second.live = false;
        ++version_;
        changed_.notify_all();
      }
      return absl::FailedPreconditionError(absl::StrCat(what, "device ", id, ": session is not live: ", st.message()));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- loops

void Plugin::CheckHealth() {
  std::set<std::string> endpoints;
  std::vector<AttachedSession> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, a] : assignments_) {
      if (!a.agent_session_endpoint().empty()) endpoints.insert(a.agent_session_endpoint());
    }
    for (const auto& [id, h] : held_) held.push_back(h.session);
  }
  const absl::Duration probe = std::min(options_.health_interval, absl::Seconds(1));
  std::map<std::string, bool> agent_ok;
  for (const std::string& ep : endpoints) agent_ok[ep] = sessions_->ProbeAgent(ep, probe).ok();
  std::map<std::string, bool> live;
  for (const AttachedSession& s : held) {
    absl::Status st = sessions_->Check(s);
    live[s.device_id] = st.ok();
    if (!st.ok()) log_.Debug("session not live", {{"device", s.device_id}, {"error", std::string(st.message())}});
  }
  std::lock_guard<std::mutex> lock(mu_);
  bool changed = agent_ok != agent_ok_;
  agent_ok_ = std::move(agent_ok);
  for (const auto& [id, ok] : live) {
    auto it = held_.find(id);
    if (it == held_.end() || it->second.session.ticket.session_id.empty() || it->second.live == ok) continue;
    it->second.live = ok;
    changed = true;
    log_.Info(ok ? "session live again" : "session lost", {{"device", id}});
  }
  if (changed) {
    ++version_;
    changed_.notify_all();
  }
}

absl::StatusOr<std::map<std::string, Plugin::Owner>> Plugin::ListOwners() const {
  auto stub = ::v1::PodResourcesLister::NewStub(UnixChannel(options_.pod_resources_socket));
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(2)));
  ::v1::ListPodResourcesResponse pods;
  grpc::Status gs = stub->List(&ctx, ::v1::ListPodResourcesRequest(), &pods);
  if (!gs.ok()) return FromGrpc(gs, "pod-resources List on " + options_.pod_resources_socket);
  std::set<std::string> resources;
  for (const std::string& pool : options_.pools) resources.insert(ResourceName(pool));
  std::map<std::string, Owner> owners;
  for (const ::v1::PodResources& p : pods.pod_resources()) {
    for (const ::v1::ContainerResources& c : p.containers()) {
      for (const ::v1::ContainerDevices& d : c.devices()) {
        if (!resources.count(d.resource_name())) continue;
        for (const std::string& id : d.device_ids()) owners[id] = {p.namespace_(), p.name(), c.name()};
      }
    }
  }
  return owners;
}

absl::Status Plugin::SyncUsage() {
  absl::StatusOr<std::map<std::string, Owner>> listed = ListOwners();
  // Without the kubelet's view nothing is released.
  if (!listed.ok()) return listed.status();
  const std::map<std::string, Owner>& owners = *listed;
  std::vector<Held> gone;
  rpci::v1::ReportUsageRequest report;
  report.set_node(options_.node_name);
  {
    std::lock_guard<std::mutex> lock(mu_);
    const absl::Time now = absl::Now();
    for (auto it = held_.begin(); it != held_.end();) {
      auto owner = owners.find(it->first);
      // The session belongs to the pod's allocation: it ends as soon as
      // pod-resources stops listing the device for the pod that held it (the
      // pod is gone: hand the device over now). An allocation pod-resources
      // has not listed yet (the kubelet records it after Allocate returns)
      // gets the release grace.
      const bool ended = owner == owners.end() && (it->second.listed || now - it->second.allocated > options_.release_grace);
      if (ended) {
        gone.push_back(std::move(it->second));
        it = held_.erase(it);
        continue;
      }
      if (owner != owners.end()) {
        it->second.listed = true;
        it->second.pod_namespace = owner->second.ns;
        it->second.pod_name = owner->second.pod;
        it->second.container = owner->second.container;
      }
      rpci::v1::DeviceUsage* u = report.add_usage();
      u->set_device_id(it->first);
      u->set_pod_namespace(it->second.pod_namespace);
      u->set_pod_name(it->second.pod_name);
      u->set_container_name(it->second.container);
      u->set_session_id(it->second.session.ticket.session_id.ToString());
      u->set_session_live(it->second.live);
      ++it;
    }
    // Devices the kubelet says are in use that we hold no session for (the
    // plugin restarted): still in use.
    for (const auto& [id, o] : owners) {
      if (held_.count(id) || !assignments_.count(id)) continue;
      rpci::v1::DeviceUsage* u = report.add_usage();
      u->set_device_id(id);
      u->set_pod_namespace(o.ns);
      u->set_pod_name(o.pod);
      u->set_container_name(o.container);
    }
    if (!gone.empty()) {
      sessions_gauge_->Set(static_cast<double>(held_.size()));
      ++version_;
      changed_.notify_all();
    }
  }
  for (const Held& h : gone) {
    ReleaseHeld(h, "PodGone");
    log_.Info("device handed back", {{"device", h.session.device_id},
                                     {"pod", absl::StrCat(h.pod_namespace, "/", h.pod_name)}});
  }
  return controller_->ReportUsage(report);
}

void Plugin::HealthLoop() {
  while (!stopping_) {
    CheckHealth();
    std::unique_lock<std::mutex> lock(loop_mu_);
    loop_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.health_interval), [&] { return stopping_.load(); });
  }
}

void Plugin::UsageLoop() {
  while (!stopping_) {
    {
      std::unique_lock<std::mutex> lock(loop_mu_);
      loop_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.usage_interval), [&] { return stopping_.load(); });
    }
    if (stopping_) return;
    if (absl::Status s = SyncUsage(); !s.ok()) log_.Warn("usage sync failed", {{"error", std::string(s.message())}});
  }
}

}  // namespace rpci::plugin
