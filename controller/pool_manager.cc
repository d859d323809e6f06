#include "controller/pool_manager.h"

#include <openssl/rand.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/map_keys.h"

namespace rpci::controller {
namespace {

constexpr size_t kMaxDecisions = 100000;

bool ReportedHealthy(rpci::v1::DeviceHealth h) { return h != rpci::v1::DEVICE_HEALTH_UNHEALTHY; }

// The values of `m` in key order, in a vector of exactly their number.
template <typename T>
std::vector<T> ValuesOf(const std::map<std::string, T>& m) {
  std::vector<T> out;
  out.reserve(m.size());
  for (const auto& [key, value] : m) out.push_back(value);
  return out;
}

// "ns/pod", "allocation <id>" while the pod is not known, or the claim.
std::string HolderOf(const Attachment& a) {
  if (a.ForClaim()) return absl::StrCat("ResourceClaim ", a.claim_namespace, "/", a.claim_name);
  if (a.pod_name.empty()) return absl::StrCat("allocation ", a.allocation);
  return absl::StrCat(a.pod_namespace, "/", a.pod_name);
}

// The ids of the devices an agent registers, after checking each names the
// agent's node, a pool and an id of its own.
absl::StatusOr<std::set<std::string>> RegisteredIds(const rpci::v1::RegisterAgentRequest& req) {
  if (req.node().empty()) return absl::InvalidArgumentError("RegisterAgent: node is empty");
  std::set<std::string> ids;
  for (const auto& d : req.devices()) {
    if (d.id().empty()) return absl::InvalidArgumentError(absl::StrCat("agent ", req.node(), ": a device has no id"));
    if (d.node() != req.node()) {
      return absl::InvalidArgumentError(absl::StrCat("agent ", req.node(), ": device ", d.id(), " names node \"",
                                                     d.node(), "\""));
    }
    if (d.pool().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("agent ", req.node(), ": device ", d.id(), " has no pool"));
    }
    if (!ids.insert(d.id()).second) {
      return absl::InvalidArgumentError(absl::StrCat("agent ", req.node(), ": device ", d.id(), " listed twice"));
    }
  }
  return ids;
}

}  // namespace

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return absl::InternalError("CSPRNG (RAND_bytes) failed");
  }
  return out;
}

PoolManager::PoolManager(Store* store, const Clock* clock, Options options, MetricsRegistry* metrics)
    : store_(store), clock_(clock), options_(std::move(options)), log_("controller") {
  if (metrics == nullptr) {
    own_metrics_ = std::make_unique<MetricsRegistry>();
    metrics = own_metrics_.get();
  }
  metrics_ = metrics;
  decisions_total_ = &metrics_->AddCounter("rpci_controller_decisions_total",
                                           "Pool manager decisions by pool, action and reason.",
                                           {"pool", "action", "reason"});
  devices_gauge_ = &metrics_->AddGauge("rpci_controller_devices", "Devices by pool and phase.", {"pool", "phase"});
  store_errors_ = &metrics_->AddCounter("rpci_controller_store_errors_total", "Failed store commits.");
}

absl::Status PoolManager::Load() {
  absl::StatusOr<StoreSnapshot> snap = store_->Load();
  if (!snap.ok()) return snap.status();
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  devices_.clear();
  agent_devices_.clear();
  node_devices_.clear();
  attachments_.clear();
  agents_.clear();
  nodes_.clear();
  for (Device& d : snap->devices) {
    if (agents_.count(d.exported.node()) == 0) agents_[d.exported.node()] = Agent{"", "", now, false, true};
    if (!d.assigned_node.empty() && nodes_.count(d.assigned_node) == 0) {
      nodes_[d.assigned_node] = Node{{}, {}, {}, now, false, false};
    }
    agent_devices_[d.exported.node()].insert(d.id());
    if (!d.assigned_node.empty()) node_devices_[d.assigned_node].insert(d.id());
    devices_[d.id()] = std::move(d);
  }
  for (Attachment& a : snap->attachments) {
    auto it = devices_.find(a.device_id);
    // Keep only attachments the device agrees with: one per device, on the
    // node it is assigned to. Anything else is a leftover of a crash between
    // two writes, and is deleted.
    if (it == devices_.end() || it->second.attachment != a.grant_id || it->second.assigned_node != a.node) {
      log_.Warn("dropping stale attachment", {{"grant", a.grant_id}, {"device", a.device_id}});
      deleted_attachments_[a.grant_id] = a;
      continue;
    }
    attachments_[a.grant_id] = std::move(a);
  }
  for (auto& [id, d] : devices_) {
    if (!d.attachment.empty() && attachments_.count(d.attachment) == 0) {
      log_.Warn("device names a missing attachment; detaching", {{"device", id}, {"grant", d.attachment}});
      d.attachment.clear();
      MarkDirtyLocked(id);
    }
  }
  BumpVersion();
  log_.Info("state loaded", {{"devices", devices_.size()}, {"attachments", attachments_.size()}});
  return FlushLocked();
}

// ---------------------------------------------------------------- agents

absl::StatusOr<rpci::v1::RegisterResponse> PoolManager::RegisterAgent(
    const rpci::v1::RegisterAgentRequest& req) {
  absl::StatusOr<std::set<std::string>> registered = RegisteredIds(req);
  if (!registered.ok()) return registered.status();
  const std::set<std::string>& ids = *registered;
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  for (const std::string& id : ids) {  // look up the request's devices, not every known device
    auto it = devices_.find(id);
    if (it != devices_.end() && it->second.exported.node() != req.node()) {
      return absl::AlreadyExistsError(
          absl::StrCat("device ", id, " is exported by node ", it->second.exported.node()));
    }
  }
  Agent& agent = agents_[req.node()];
  agent = Agent{req.session_endpoint(), req.fabric_provider(), now, true, true};
  absl::btree_set<std::string>& exported_here = agent_devices_[req.node()];
  for (const auto& exported : req.devices()) {
    auto [it, inserted] = devices_.try_emplace(exported.id());
    Device& d = it->second;
    d.exported = exported;
    ApplyNodeLabelsLocked(d);
    if (inserted) {
      exported_here.insert(exported.id());
      d.healthy = ReportedHealthy(exported.health());
      d.health_changed = now;
      d.health_reason = d.healthy ? "" : "ReportedByAgent";
      DecideLocked("discover", d, "", "RegisteredByAgent");
    } else {
      SetHealthLocked(d, ReportedHealthy(exported.health()), "ReportedByAgent", now);
      d.draining = false;
    }
    MarkDirtyLocked(d.id());
  }
  ForgetUnexportedLocked(req.node(), ids);
  BumpVersion();
  if (absl::Status s = FlushLocked(); !s.ok()) return s;
  rpci::v1::RegisterResponse resp;
  resp.set_heartbeat_interval_seconds(absl::ToInt64Seconds(options_.heartbeat_interval));
  resp.set_lease_seconds(absl::ToInt64Seconds(options_.agent_lease));
  return resp;
}

void PoolManager::ForgetUnexportedLocked(const std::string& node, const std::set<std::string>& exported) {
  // Only this agent's own devices are looked at (all 100k per registration
  // made registering 2 000 agents take minutes).
  absl::btree_set<std::string>& exported_here = agent_devices_[node];
  for (auto id = exported_here.begin(); id != exported_here.end();) {
    auto it = devices_.find(*id);
    if (it != devices_.end() && exported.count(*id) == 0) {
      Device& d = it->second;
      if (!d.attachment.empty()) {
        if (!d.draining) {
          d.draining = true;
          DecideLocked("drain", d, d.assigned_node, "NoLongerExported");
          MarkDirtyLocked(d.id());
        }
      } else {
        DecideLocked("remove", d, d.assigned_node, "NoLongerExported");
        deleted_devices_.insert(d.id());
        dirty_devices_.erase(d.id());
        if (!d.assigned_node.empty()) node_devices_[d.assigned_node].erase(d.id());
        devices_.erase(it);
        it = devices_.end();
      }
    }
    id = it == devices_.end() ? exported_here.erase(id) : std::next(id);
  }
}

absl::Status PoolManager::AgentHeartbeat(const rpci::v1::AgentHeartbeatRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  auto ait = agents_.find(req.node());
  if (ait == agents_.end() || !ait->second.registered) {
    return absl::NotFoundError(absl::StrCat("agent ", req.node(), " is not registered; call RegisterAgent"));
  }
  const absl::Time now = clock_->Now();
  ait->second.last_seen = now;
  if (!ait->second.alive) {
    return absl::NotFoundError(absl::StrCat("agent ", req.node(), "'s lease expired; call RegisterAgent"));
  }
  for (const auto& h : req.health()) {
    auto it = devices_.find(h.device_id());
    if (it == devices_.end() || it->second.exported.node() != req.node()) {
      return absl::InvalidArgumentError(
          absl::StrCat("agent ", req.node(), ": health report for device ", h.device_id(), " it does not export"));
    }
    SetHealthLocked(it->second, ReportedHealthy(h.health()), "ReportedByAgent", now, h.reason());
    SetScrubbingLocked(it->second, h.scrubbing());
  }
  for (const auto& s : req.sessions()) {
    auto dit = devices_.find(s.device_id());
    if (dit == devices_.end() || dit->second.exported.node() != req.node() || dit->second.attachment.empty()) continue;
    absl::StatusOr<session::SessionId> session_id = session::SessionId::ParseOptional(s.session_id());
    if (!session_id.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("agent ", req.node(), ": session report for device ", s.device_id(), ": ",
                       session_id.status().message()));
    }
    Attachment& a = attachments_[dit->second.attachment];
    if (a.session_id != *session_id || a.writes_applied != s.writes_applied() || a.bytes_in != s.bytes_in() ||
        a.bytes_out != s.bytes_out() || a.completions != s.completions()) {
      a.session_id = *session_id;
      a.writes_applied = s.writes_applied();
      a.bytes_in = s.bytes_in();
      a.bytes_out = s.bytes_out();
      a.completions = s.completions();
      dirty_attachments_.insert(a.grant_id);
    }
    dit->second.last_used = now;
  }
  return FlushLocked();
}

rpci::v1::SessionGrant PoolManager::GrantOf(const Attachment& a) const {
  rpci::v1::SessionGrant g;
  g.set_grant_id(a.grant_id);
  g.set_device_id(a.device_id);
  g.set_compute_node(a.node);
  g.set_pod_namespace(a.pod_namespace);
  g.set_pod_name(a.pod_name);
  g.set_container_name(a.container_name);
  g.set_token(a.token);
  g.set_expires_unix_seconds(absl::ToUnixSeconds(a.expires));
  return g;
}

std::vector<rpci::v1::SessionGrant> PoolManager::GrantsFor(const std::string& agent_node) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, rpci::v1::SessionGrant> by_id;  // in grant id order, as attachments_
  auto exported = agent_devices_.find(agent_node);
  if (exported == agent_devices_.end()) return {};
  for (const std::string& id : exported->second) {  // this agent's own devices, not every attachment
    auto it = devices_.find(id);
    if (it == devices_.end() || it->second.attachment.empty()) continue;
    auto a = attachments_.find(it->second.attachment);
    if (a != attachments_.end() && a->second.device_id == id) by_id[a->first] = GrantOf(a->second);
  }
  std::vector<rpci::v1::SessionGrant> out;
  out.reserve(by_id.size());
  for (auto& [grant_id, g] : by_id) out.push_back(std::move(g));
  return out;
}

// ---------------------------------------------------------------- plugins

absl::StatusOr<rpci::v1::RegisterResponse> PoolManager::RegisterNode(const rpci::v1::RegisterNodeRequest& req) {
  if (req.node().empty()) return absl::InvalidArgumentError("RegisterNode: node is empty");
  std::lock_guard<std::mutex> lock(mu_);
  Node& n = nodes_[req.node()];
  n.pools = std::set<std::string>(req.pools().begin(), req.pools().end());
  n.nics.assign(req.nics().begin(), req.nics().end());
  n.last_seen = clock_->Now();
  n.registered = true;
  n.gone = false;
  if (auto labels = node_labels_.find(req.node()); labels != node_labels_.end()) n.labels = labels->second;
  BumpVersion();
  log_.Info("compute node registered", {{"node", req.node()}, {"pools", absl::StrJoin(n.pools, ",")}});
  rpci::v1::RegisterResponse resp;
  resp.set_heartbeat_interval_seconds(absl::ToInt64Seconds(options_.heartbeat_interval));
  resp.set_lease_seconds(absl::ToInt64Seconds(options_.node_lease));
  return resp;
}

absl::Status PoolManager::NodeHeartbeat(const std::string& node) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end() || !it->second.registered) {
    return absl::NotFoundError(absl::StrCat("compute node ", node, " is not registered; call RegisterNode"));
  }
  it->second.last_seen = clock_->Now();
  return absl::OkStatus();
}

rpci::v1::AssignmentSet PoolManager::AssignmentsFor(const std::string& node) const {
  std::lock_guard<std::mutex> lock(mu_);
  rpci::v1::AssignmentSet set;
  auto assigned = node_devices_.find(node);
  if (assigned == node_devices_.end()) return set;
  for (const std::string& id : assigned->second) {  // this node's own devices, not all of them
    auto it = devices_.find(id);
    if (it == devices_.end()) continue;
    const Device& d = it->second;
    if (d.assigned_node != node || HeldForClaimLocked(d)) continue;
    rpci::v1::Assignment* a = set.add_assignments();
    *a->mutable_device() = d.exported;
    a->mutable_device()->set_health(d.healthy ? rpci::v1::DEVICE_HEALTH_HEALTHY : rpci::v1::DEVICE_HEALTH_UNHEALTHY);
    auto agent = agents_.find(d.exported.node());
    if (agent != agents_.end()) {
      a->set_agent_session_endpoint(agent->second.session_endpoint);
      a->set_agent_fabric_provider(agent->second.fabric_provider);
    }
  }
  return set;
}

absl::StatusOr<rpci::v1::ClaimResponse> PoolManager::Claim(const rpci::v1::ClaimRequest& req) {
  if (req.pod_name().empty()) return absl::InvalidArgumentError("Claim: pod_name is empty");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = devices_.find(req.device_id());
  if (it == devices_.end()) return absl::NotFoundError(absl::StrCat("device ", req.device_id(), " is unknown"));
  Device& d = it->second;
  if (d.assigned_node != req.node()) {
    return absl::PermissionDeniedError(
        absl::StrCat("device ", d.id(), " is not assigned to node ", req.node()));
  }
  // No namespace: the plugin claims for a kubelet allocation whose pod is
  // not known yet; pod_name is then the allocation id.
  const bool for_allocation = req.pod_namespace().empty();
  const std::string& ns = req.pod_namespace();
  auto agent = agents_.find(d.exported.node());
  if (agent == agents_.end() || !agent->second.registered || !agent->second.alive) {
    return absl::UnavailableError(absl::StrCat("device ", d.id(), ": its agent on ", d.exported.node(),
                                               " is not registered"));
  }
  rpci::v1::ClaimResponse resp;
  resp.set_agent_session_endpoint(agent->second.session_endpoint);
  if (!d.attachment.empty()) {
    const Attachment& a = attachments_[d.attachment];
    const bool same = for_allocation ? a.allocation == req.pod_name()
                                     : a.pod_namespace == ns && a.pod_name == req.pod_name() &&
                                           a.container_name == req.container_name();
    if (same) {
      *resp.mutable_grant() = GrantOf(a);
      return resp;
    }
    return absl::FailedPreconditionError(absl::StrCat("device ", d.id(), " is attached to ", HolderOf(a)));
  }
  if (!d.healthy) return absl::FailedPreconditionError(absl::StrCat("device ", d.id(), " is unhealthy"));
  if (d.draining || d.drain_requested) {
    return absl::FailedPreconditionError(absl::StrCat("device ", d.id(), " is draining"));
  }
  Attachment a;
  a.node = req.node();
  if (for_allocation) {
    a.allocation = req.pod_name();
  } else {
    a.pod_namespace = ns;
    a.pod_name = req.pod_name();
    a.container_name = req.container_name();
  }
  absl::StatusOr<std::string> grant_id = GrantLocked(d, std::move(a), "Claimed");
  if (!grant_id.ok()) return grant_id.status();
  *resp.mutable_grant() = GrantOf(attachments_.at(*grant_id));
  BumpVersion();
  if (absl::Status s = FlushLocked({AttachmentStoreKey(*grant_id), DeviceStoreKey(d.id())}); !s.ok()) {
    // Not granted: the device must not stay attached to a grant that has no
    // DeviceAttachment.
    DetachLocked(d, "StoreRefused", std::string(s.message()));
    BumpVersion();
    (void)FlushLocked();
    return s;
  }
  return resp;
}

absl::StatusOr<std::string> PoolManager::GrantLocked(Device& d, Attachment a, const std::string& reason) {
  absl::StatusOr<std::string> id_bytes = RandomBytes(12);
  absl::StatusOr<std::string> token = RandomBytes(32);
  if (!id_bytes.ok()) return id_bytes.status();
  if (!token.ok()) return token.status();
  const absl::Time now = clock_->Now();
  a.grant_id = "g-" + absl::BytesToHexString(*id_bytes);
  a.device_id = d.id();
  a.token = *token;
  a.created = now;
  a.expires = now + options_.grant_ttl;
  d.attachment = a.grant_id;
  d.last_used = now;
  DecideLocked("attach", d, a.node, reason, absl::StrCat("by ", HolderOf(a)));
  dirty_attachments_.insert(a.grant_id);
  MarkDirtyLocked(d.id());
  std::string grant_id = a.grant_id;
  attachments_[grant_id] = std::move(a);
  return grant_id;
}

absl::Status PoolManager::Release(const rpci::v1::ReleaseRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = devices_.find(req.device_id());
  if (it == devices_.end()) return absl::OkStatus();  // already gone
  Device& d = it->second;
  if (d.attachment.empty()) return absl::OkStatus();
  const Attachment& a = attachments_[d.attachment];
  if (a.node != req.node()) {
    return absl::PermissionDeniedError(absl::StrCat("device ", d.id(), " is attached on node ", a.node));
  }
  if (!req.grant_id().empty() && req.grant_id() != a.grant_id) return absl::OkStatus();  // an older grant
  d.last_used = clock_->Now();
  DetachLocked(d, "ReleasedByPlugin", req.reason());
  BumpVersion();
  return FlushLocked();
}

absl::Status PoolManager::ReportUsage(const rpci::v1::ReportUsageRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  std::set<std::string> used;
  bool changed = false;
  for (const auto& u : req.usage()) {
    auto it = devices_.find(u.device_id());
    if (it == devices_.end() || it->second.assigned_node != req.node()) continue;
    used.insert(u.device_id());
    it->second.last_used = now;
    changed |= NamePodLocked(it->second, u);
  }
  for (auto& [id, d] : devices_) {
    if (d.assigned_node != req.node() || d.attachment.empty() || used.count(id)) continue;
    const Attachment& a = attachments_[d.attachment];
    // A claim's grant lives until UnprepareClaim, not by usage reports.
    if (a.ForClaim() || a.created + options_.usage_grace > now) continue;
    d.last_used = now;
    DetachLocked(d, "PodNoLongerUsesDevice");
    changed = true;
  }
  if (changed) BumpVersion();
  return FlushLocked();
}

bool PoolManager::NamePodLocked(const Device& d, const rpci::v1::DeviceUsage& u) {
  if (d.attachment.empty() || u.pod_name().empty()) return false;
  auto it = attachments_.find(d.attachment);
  if (it == attachments_.end() || it->second.ForClaim()) return false;
  Attachment& a = it->second;
  if (a.pod_namespace == u.pod_namespace() && a.pod_name == u.pod_name() && a.container_name == u.container_name()) {
    return false;
  }
  a.pod_namespace = u.pod_namespace();
  a.pod_name = u.pod_name();
  a.container_name = u.container_name();
  dirty_attachments_.insert(a.grant_id);
  log_.Info("attachment names its pod", {{"grant", a.grant_id}, {"device", d.id()}, {"pod", HolderOf(a)}});
  return true;
}

// ---------------------------------------------------------------- DRA

bool PoolManager::HeldForClaimLocked(const Device& d) const {
  if (d.attachment.empty()) return false;
  auto it = attachments_.find(d.attachment);
  return it != attachments_.end() && it->second.ForClaim();
}

absl::StatusOr<Device*> PoolManager::DraDeviceLocked(const ClaimResult& r) {
  auto pool = pools_.find(r.pool);
  if (pool == pools_.end() || !pool->second.DraEnabled()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pool ", r.pool, " is not DRA-enabled (DevicePool spec.allocationMode dra or both)"));
  }
  for (auto& [id, d] : devices_) {
    if (d.pool() == r.pool && DraDeviceName(id) == r.device) return &d;
  }
  return absl::FailedPreconditionError(absl::StrCat("pool ", r.pool, " has no device ", r.device));
}

absl::Status PoolManager::DraFreeLocked(const Device& d, absl::Time now) const {
  if (!d.attachment.empty()) {
    auto a = attachments_.find(d.attachment);
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", d.id(), " is held by ", a == attachments_.end() ? d.attachment : HolderOf(a->second)));
  }
  if (!d.assigned_node.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", d.id(), " is held by the device plugin on node ", d.assigned_node));
  }
  switch (d.PhaseAt(now)) {
    case DevicePhase::kAvailable: break;
    case DevicePhase::kUnhealthy:
      return absl::FailedPreconditionError(absl::StrCat("device ", d.id(), " is unhealthy: ", d.health_reason));
    case DevicePhase::kDraining:
      return absl::FailedPreconditionError(absl::StrCat("device ", d.id(), " is draining"));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat("device ", d.id(), " is releasing (being scrubbed after its last holder)"));
  }
  auto agent = agents_.find(d.exported.node());
  if (agent == agents_.end() || !agent->second.registered || !agent->second.alive) {
    return absl::UnavailableError(
        absl::StrCat("device ", d.id(), ": its agent on ", d.exported.node(), " is not registered"));
  }
  return absl::OkStatus();
}

absl::StatusOr<rpci::v1::PrepareClaimResponse> PoolManager::PreparedLocked(const std::string& claim_uid,
                                                                           const std::string& node) const {
  rpci::v1::PrepareClaimResponse resp;
  for (const auto& [id, a] : attachments_) {
    if (a.claim_uid != claim_uid) continue;
    if (a.node != node) {
      return absl::PermissionDeniedError(absl::StrCat("ResourceClaim ", a.claim_namespace, "/", a.claim_name,
                                                      " is prepared on node ", a.node));
    }
    const Device& d = devices_.at(a.device_id);
    rpci::v1::PreparedDevice* p = resp.add_devices();
    p->set_request(a.claim_request);
    p->set_pool(d.pool());
    p->set_device(DraDeviceName(d.id()));
    *p->mutable_grant() = GrantOf(a);
    auto agent = agents_.find(d.exported.node());
    if (agent != agents_.end()) p->set_agent_session_endpoint(agent->second.session_endpoint);
    *p->mutable_exported() = d.exported;
  }
  return resp;
}

absl::StatusOr<rpci::v1::PrepareClaimResponse> PoolManager::PrepareClaim(const rpci::v1::NodeClaimRequest& req,
                                                                         const std::vector<ClaimResult>& results) {
  if (req.claim_uid().empty()) return absl::InvalidArgumentError("PrepareClaim: claim_uid is empty");
  if (results.empty()) return absl::InvalidArgumentError("PrepareClaim: the claim allocates no rpci.io device");
  std::lock_guard<std::mutex> lock(mu_);
  auto node = nodes_.find(req.node());
  if (node == nodes_.end() || !node->second.registered) {
    return absl::NotFoundError(absl::StrCat("compute node ", req.node(), " is not registered; call RegisterNode"));
  }
  absl::StatusOr<rpci::v1::PrepareClaimResponse> prepared = PreparedLocked(req.claim_uid(), req.node());
  if (!prepared.ok() || prepared->devices_size() > 0) return prepared;
  const absl::Time now = clock_->Now();
  std::vector<Device*> chosen;
  for (const ClaimResult& r : results) {
    absl::StatusOr<Device*> d = DraDeviceLocked(r);
    if (!d.ok()) return d.status();
    if (std::find(chosen.begin(), chosen.end(), *d) != chosen.end()) {
      return absl::InvalidArgumentError(absl::StrCat("the claim names device ", r.device, " twice"));
    }
    if (absl::Status s = DraFreeLocked(**d, now); !s.ok()) return s;
    chosen.push_back(*d);
  }
  std::set<std::string> keys;
  for (size_t i = 0; i < chosen.size(); ++i) {
    Device& d = *chosen[i];
    AssignLocked(d, req.node(), "ClaimPrepared", now);
    Attachment a;
    a.node = req.node();
    a.claim_uid = req.claim_uid();
    a.claim_namespace = req.claim_namespace();
    a.claim_name = req.claim_name();
    a.claim_request = results[i].request;
    absl::StatusOr<std::string> grant_id = GrantLocked(d, std::move(a), "ClaimPrepared");
    if (!grant_id.ok()) return RollBackClaimLocked(chosen, grant_id.status());
    keys.insert(AttachmentStoreKey(*grant_id));
    keys.insert(DeviceStoreKey(d.id()));
  }
  BumpVersion();
  if (absl::Status s = FlushLocked(keys); !s.ok()) return RollBackClaimLocked(chosen, s);
  return PreparedLocked(req.claim_uid(), req.node());
}

absl::Status PoolManager::RollBackClaimLocked(const std::vector<Device*>& devices, const absl::Status& why) {
  for (Device* d : devices) {
    if (!d->attachment.empty()) DetachLocked(*d, "StoreRefused", std::string(why.message()));
    if (!d->assigned_node.empty()) UnassignLocked(*d, "release", "StoreRefused", absl::ZeroDuration(), clock_->Now());
  }
  BumpVersion();
  (void)FlushLocked();
  return why;
}

absl::Status PoolManager::UnprepareClaim(const rpci::v1::NodeClaimRequest& req) {
  if (req.claim_uid().empty()) return absl::InvalidArgumentError("UnprepareClaim: claim_uid is empty");
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> devices;
  for (const auto& [id, a] : attachments_) {
    if (a.claim_uid != req.claim_uid()) continue;
    if (a.node != req.node()) {
      return absl::PermissionDeniedError(absl::StrCat("ResourceClaim ", a.claim_namespace, "/", a.claim_name,
                                                      " is prepared on node ", a.node));
    }
    devices.push_back(a.device_id);
  }
  if (devices.empty()) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  for (const std::string& id : devices) {
    Device& d = devices_.at(id);
    d.last_used = now;
    DetachLocked(d, "ClaimUnprepared");
    // Releasing while the agent tears the session down and scrubs it.
    UnassignLocked(d, "release", "ClaimUnprepared", options_.release_grace, now);
  }
  BumpVersion();
  return FlushLocked();
}

std::map<std::string, std::vector<rpci::v1::ExportedDevice>> PoolManager::DraOffer() const {
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  std::map<std::string, std::vector<rpci::v1::ExportedDevice>> out;
  for (const auto& [name, pool] : pools_) {
    if (pool.DraEnabled()) out[name];
  }
  for (const auto& [id, d] : devices_) {
    auto pool = pools_.find(d.pool());
    if (pool == pools_.end() || !pool->second.DraEnabled() || !pool->second.Selects(d.exported)) continue;
    if (DraFreeLocked(d, now).ok()) out[d.pool()].push_back(d.exported);
  }
  return out;
}

void PoolManager::SetClaimAllocations(std::set<std::pair<std::string, std::string>> allocated) {
  std::lock_guard<std::mutex> lock(mu_);
  claim_allocated_ = std::move(allocated);
}

std::map<std::string, std::vector<std::string>> PoolManager::NodesByPool() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [name, n] : nodes_) {
    if (!n.registered) continue;
    for (const std::string& p : n.pools) out[p].push_back(name);
  }
  return out;
}

std::vector<PoolSpec> PoolManager::DraPools() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<PoolSpec> out;
  for (const auto& [name, pool] : pools_) {
    if (pool.DraEnabled()) out.push_back(pool);
  }
  return out;
}

// ---------------------------------------------------------------- inputs

void PoolManager::SetPools(const std::vector<PoolSpec>& pools) {
  std::lock_guard<std::mutex> lock(mu_);
  pools_.clear();
  for (const PoolSpec& p : pools) pools_[p.name] = p;
  BumpVersion();
}

void PoolManager::SetDemand(const std::vector<PodDemand>& demand) {
  std::lock_guard<std::mutex> lock(mu_);
  demand_ = demand;
}

void PoolManager::NodeGone(const std::string& node) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(node);
  if (it != nodes_.end()) it->second.gone = true;
  DropNodeLocked(node, "NodeDeleted");
  BumpVersion();
  (void)FlushLocked();
}

void PoolManager::SetNodeLabels(const std::map<std::string, std::map<std::string, std::string>>& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  node_labels_ = labels;
  for (auto& [name, n] : nodes_) {
    auto it = labels.find(name);
    if (it != labels.end()) n.labels = it->second;
  }
  for (auto& [id, d] : devices_) ApplyNodeLabelsLocked(d);
  BumpVersion();
  (void)FlushLocked();
}

void PoolManager::ApplyNodeLabelsLocked(Device& d) {
  auto it = node_labels_.find(d.exported.node());
  if (it == node_labels_.end()) return;
  bool changed = false;
  for (const auto& [key, value] : it->second) {
    // insert() keeps a label the agent set itself.
    changed |= d.exported.mutable_labels()->insert({key, value}).second;
  }
  if (changed) MarkDirtyLocked(d.id());
}

void PoolManager::SetDrainRequests(const std::map<std::string, bool>& requests) {
  std::lock_guard<std::mutex> lock(mu_);
  bool changed = false;
  for (const auto& [id, drain] : requests) {
    auto it = devices_.find(id);
    if (it == devices_.end() || it->second.drain_requested == drain) continue;
    Device& d = it->second;
    d.drain_requested = drain;
    DecideLocked(drain ? "drain" : "undrain", d, d.assigned_node, drain ? "DrainRequested" : "DrainWithdrawn");
    MarkDirtyLocked(id);
    changed = true;
  }
  if (!changed) return;
  BumpVersion();
  (void)FlushLocked();
}

absl::Status PoolManager::AttachmentDeleted(const std::string& grant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = attachments_.find(grant_id);
  if (it == attachments_.end()) return absl::OkStatus();
  auto dit = devices_.find(it->second.device_id);
  if (dit == devices_.end()) return absl::OkStatus();
  Device& d = dit->second;
  d.last_used = clock_->Now();
  DetachLocked(d, "AttachmentDeleted");
  BumpVersion();
  return FlushLocked();
}

// ---------------------------------------------------------------- policy

const PoolSpec& PoolManager::PoolOfLocked(const std::string& name) const {
  auto it = pools_.find(name);
  return it == pools_.end() ? options_.default_pool : it->second;
}

std::vector<Decision> PoolManager::Reconcile() {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t first = decisions_made_;
  const absl::Time now = clock_->Now();
  ExpireLocked(now);
  std::map<std::string, std::vector<Device*>> by_pool;
  for (auto& [id, d] : devices_) by_pool[d.pool()].push_back(&d);
  for (const auto& [name, n] : nodes_) {
    for (const std::string& p : n.pools) by_pool[p];
  }
  for (auto& [name, devices] : by_pool) {
    PoolSpec pool = PoolOfLocked(name);
    pool.name = name;
    ReconcilePoolLocked(pool, devices, now);
  }
  UpdateGaugesLocked(now);
  if (decisions_made_ != first) ++version_;
  (void)FlushLocked();
  // The pass's decisions are the last ones made; when the kept window wrapped
  // during the pass (more than kMaxDecisions / 2), only those still kept.
  const size_t made = std::min<uint64_t>(decisions_made_ - first, decisions_.size());
  return std::vector<Decision>(decisions_.end() - made, decisions_.end());
}

void PoolManager::ExpireLocked(absl::Time now) {
  for (auto& [name, agent] : agents_) {
    if (!agent.alive || agent.last_seen + options_.agent_lease > now) continue;
    agent.alive = false;
    log_.Warn("agent lease expired", {{"node", name}});
    for (const std::string& id : agent_devices_[name]) {
      auto it = devices_.find(id);
      if (it == devices_.end()) continue;
      Device& d = it->second;
      SetHealthLocked(d, false, "DeviceServerLost", now);
      if (!d.assigned_node.empty() && d.attachment.empty()) {
        UnassignLocked(d, "reclaim", "DeviceServerLost", options_.release_grace, now);
      }
    }
  }
  std::vector<std::string> dead;
  for (const auto& [name, n] : nodes_) {
    if (n.gone || n.last_seen + options_.node_lease <= now) dead.push_back(name);
  }
  for (const std::string& name : dead) DropNodeLocked(name, nodes_[name].gone ? "NodeDeleted" : "ComputeNodeLost");
}

void PoolManager::DropNodeLocked(const std::string& node, const std::string& reason) {
  const absl::Time now = clock_->Now();
  for (auto& [id, d] : devices_) {
    if (d.assigned_node == node) {
      if (!d.attachment.empty()) DetachLocked(d, reason);
      // The node is dead: nothing there can still use the device, no grace.
      UnassignLocked(d, "reclaim", reason, absl::ZeroDuration(), now);
    } else if (d.releasing_from == node) {
      d.releasing_until = absl::InfinitePast();
      MarkDirtyLocked(id);
    }
  }
  if (nodes_.erase(node)) log_.Warn("compute node dropped", {{"node", node}, {"reason", reason}});
}

void PoolManager::ReconcilePoolLocked(const PoolSpec& pool, const std::vector<Device*>& devices, absl::Time now) {
  // Placement assigns for the device plugin only: none in a DRA-only pool,
  // and never a device a claim holds or the scheduler allocated to one.
  if (!pool.DevicePluginEnabled()) return;
  PlacementInput in{pool, {}, {}, {}, demand_, now};
  for (const Device* d : devices) {
    const bool allocated = pool.DraEnabled() && d->assigned_node.empty() &&
                           claim_allocated_.count({d->pool(), DraDeviceName(d->id())});
    if (!HeldForClaimLocked(*d) && !allocated) in.devices.push_back(d);
  }
  for (const auto& [name, n] : nodes_) {
    if (n.registered && n.pools.count(pool.name)) in.nodes.push_back(PlacementNode{name, n.labels});
  }
  for (const auto& [name, agent] : agents_) {
    if (agent.alive) in.live_agents.insert(name);
  }
  for (const Move& m : PlacePool(in)) {
    Device& d = devices_.at(m.device_id);
    switch (m.kind) {
      case Move::Kind::kAssign:
        AssignLocked(d, m.node, m.reason, now);
        break;
      case Move::Kind::kRelease:
        UnassignLocked(d, "release", m.reason, options_.release_grace, now);
        break;
    }
  }
}

void PoolManager::AssignLocked(Device& d, const std::string& node, const std::string& reason, absl::Time now) {
  if (!d.assigned_node.empty()) node_devices_[d.assigned_node].erase(d.id());
  node_devices_[node].insert(d.id());
  d.assigned_node = node;
  d.assigned_changed = now;
  d.last_used = now;
  d.releasing_from.clear();
  d.releasing_until = absl::InfinitePast();
  d.reason = reason;
  DecideLocked("assign", d, node, reason);
  MarkDirtyLocked(d.id());
}

void PoolManager::UnassignLocked(Device& d, const std::string& action, const std::string& reason,
                                 absl::Duration grace, absl::Time now) {
  DecideLocked(action, d, d.assigned_node, reason);
  d.releasing_from = d.assigned_node;
  d.releasing_until = grace > absl::ZeroDuration() ? now + grace : absl::InfinitePast();
  if (!d.assigned_node.empty()) node_devices_[d.assigned_node].erase(d.id());
  d.assigned_node.clear();
  d.assigned_changed = now;
  d.reason = reason;
  MarkDirtyLocked(d.id());
}

void PoolManager::DetachLocked(Device& d, const std::string& reason, const std::string& detail) {
  auto it = attachments_.find(d.attachment);
  if (it != attachments_.end()) {
    deleted_attachments_[it->first] = it->second;
    dirty_attachments_.erase(it->first);
    attachments_.erase(it);
  }
  DecideLocked("detach", d, d.assigned_node, reason, detail);
  d.attachment.clear();
  d.reason = reason;
  MarkDirtyLocked(d.id());
  // Removed in FlushLocked, so callers iterating devices_ stay valid.
  if (d.draining) drained_.insert(d.id());
}

void PoolManager::SetHealthLocked(Device& d, bool healthy, const std::string& reason, absl::Time now,
                                  const std::string& detail) {
  if (d.healthy == healthy) return;
  d.healthy = healthy;
  d.health_reason = healthy ? "" : (detail.empty() ? reason : detail);
  d.health_changed = now;
  d.exported.set_health(healthy ? rpci::v1::DEVICE_HEALTH_HEALTHY : rpci::v1::DEVICE_HEALTH_UNHEALTHY);
  DecideLocked(healthy ? "healthy" : "unhealthy", d, d.assigned_node, reason, detail);
  MarkDirtyLocked(d.id());
  BumpVersion();
}

void PoolManager::SetScrubbingLocked(Device& d, bool scrubbing) {
  if (d.scrubbing == scrubbing) return;
  d.scrubbing = scrubbing;
  d.reason = scrubbing ? "Scrubbing" : "Scrubbed";
  DecideLocked(scrubbing ? "scrubbing" : "scrubbed", d, d.assigned_node, "ReportedByAgent", "");
  MarkDirtyLocked(d.id());
  BumpVersion();
}

void PoolManager::DecideLocked(const std::string& action, const Device& d, const std::string& node,
                               const std::string& reason, const std::string& detail) {
  decisions_total_->Labels({d.pool(), action, reason}).Increment();
  log_.Info("decision", {{"action", action}, {"device", d.id()}, {"pool", d.pool()}, {"node", node},
                         {"reason", reason}, {"detail", detail}});
  if (decisions_.size() >= kMaxDecisions) decisions_.erase(decisions_.begin(), decisions_.begin() + kMaxDecisions / 2);
  decisions_.push_back(Decision{action, d.id(), node, reason, detail});
  ++decisions_made_;
}

void PoolManager::MarkDirtyLocked(const std::string& device_id) {
  dirty_devices_.insert(device_id);
  deleted_devices_.erase(device_id);
}

absl::Status PoolManager::FlushLocked(const std::set<std::string>& mine) {
  for (const std::string& id : drained_) {
    auto it = devices_.find(id);
    if (it == devices_.end() || !it->second.draining || !it->second.attachment.empty()) continue;
    DecideLocked("remove", it->second, it->second.assigned_node, "DrainedDeviceDetached");
    deleted_devices_.insert(id);
    dirty_devices_.erase(id);
    agent_devices_[it->second.exported.node()].erase(id);
    if (!it->second.assigned_node.empty()) node_devices_[it->second.assigned_node].erase(id);
    devices_.erase(it);
  }
  drained_.clear();
  const absl::Time now = clock_->Now();
  // An object that failed waits out its backoff, unless the caller needs it
  // written now.
  auto due = [&](const std::string& key) {
    if (retry_.empty()) return true;
    auto it = retry_.find(key);
    return mine.count(key) || it == retry_.end() || it->second.next <= now;
  };
  std::vector<const Device*> puts;
  puts.reserve(dirty_devices_.size());
  for (const std::string& id : dirty_devices_) {
    auto it = devices_.find(id);
    if (it != devices_.end() && due(DeviceStoreKey(id))) puts.push_back(&it->second);
  }
  StoreBatch batch;
  for (const std::string& id : deleted_devices_) {
    if (due(DeviceStoreKey(id))) batch.delete_devices.push_back(id);
  }
  for (const std::string& id : dirty_attachments_) {
    auto it = attachments_.find(id);
    if (it != attachments_.end() && due(AttachmentStoreKey(id))) batch.put_attachments.push_back(it->second);
  }
  for (const auto& [id, a] : deleted_attachments_) {
    if (due(AttachmentStoreKey(id))) batch.delete_attachments.push_back(a);
  }
  // Devices go in batches of at most options_.max_batch_devices.
  absl::Status mine_failed;
  size_t next = 0;
  do {
    const size_t end = std::min(puts.size(), next + std::max<size_t>(1, options_.max_batch_devices));
    batch.put_devices.reserve(end - next);
    for (; next < end; ++next) batch.put_devices.push_back(*puts[next]);
    if (batch.empty()) break;
    CommitLocked(batch, mine, now, &mine_failed);
    batch = StoreBatch();
  } while (next < puts.size());
  return mine_failed;
}

void PoolManager::CommitLocked(const StoreBatch& batch, const std::set<std::string>& mine, absl::Time now,
                               absl::Status* mine_failed) {
  const CommitOutcome outcome = store_->Commit(batch);
  auto settle = [&](const std::string& key, const std::string& device_id, auto erase) {
    auto failed = outcome.failed.find(key);
    if (failed == outcome.failed.end()) {
      erase();
      if (!retry_.empty()) retry_.erase(key);
      return;
    }
    NoteStoreFailureLocked(key, device_id, failed->second, now);
    if (mine.count(key) && mine_failed->ok()) {
      *mine_failed = absl::UnavailableError(absl::StrCat("store: ", key, ": ", failed->second.message()));
    }
  };
  for (const Device& d : batch.put_devices) {
    settle(DeviceStoreKey(d.id()), d.id(), [&] { dirty_devices_.erase(d.id()); });
  }
  for (const std::string& id : batch.delete_devices) {
    settle(DeviceStoreKey(id), id, [&] { deleted_devices_.erase(id); });
  }
  for (const Attachment& a : batch.put_attachments) {
    settle(AttachmentStoreKey(a.grant_id), a.device_id, [&] { dirty_attachments_.erase(a.grant_id); });
  }
  for (const Attachment& a : batch.delete_attachments) {
    settle(AttachmentStoreKey(a.grant_id), a.device_id, [&] { deleted_attachments_.erase(a.grant_id); });
  }
}

void PoolManager::NoteStoreFailureLocked(const std::string& key, const std::string& device_id,
                                         const absl::Status& error, absl::Time now) {
  Retry& r = retry_[key];
  ++r.failures;
  // 200 ms doubling to 30 s: a refused object is retried, but never hammers
  // the API server, and it never holds up the others.
  const absl::Duration backoff = std::min(absl::Milliseconds(200) * (int64_t{1} << std::min(r.failures - 1, 20)),
                                          absl::Seconds(30));
  r.next = now + backoff;
  store_errors_->Get().Increment();
  log_.Error("store refused an object; will retry",
             {{"object", key}, {"error", error.ToString()}, {"failures", r.failures},
              {"retry_in_ms", absl::ToInt64Milliseconds(backoff)}});
  // Reported on the device too (an Event, through the decisions).
  Device reported;
  auto it = devices_.find(device_id);
  if (it != devices_.end()) {
    reported = it->second;
  } else {
    reported.exported.set_id(device_id);
  }
  DecideLocked("persist-failed", reported, reported.assigned_node, "StoreRefused",
               absl::StrCat(key, ": ", error.message()));
}

std::map<std::string, std::map<std::string, int64_t>> PoolManager::PhaseCounts() const {
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  std::map<std::string, std::map<std::string, int64_t>> out;
  for (const auto& [id, d] : devices_) ++out[d.pool()][std::string(PhaseName(d.PhaseAt(now)))];
  return out;
}

std::vector<std::string> PoolManager::StoreBacklog() const {
  std::lock_guard<std::mutex> lock(mu_);
  return KeysOf(retry_);
}

void PoolManager::UpdateGaugesLocked(absl::Time now) {
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const auto& [id, d] : devices_) counts[{d.pool(), std::string(PhaseName(d.PhaseAt(now)))}]++;
  for (const std::vector<std::string>& labels : devices_gauge_->Series()) {
    if (!counts.count({labels[0], labels[1]})) devices_gauge_->Labels(labels).Set(0);
  }
  for (const auto& [key, n] : counts) devices_gauge_->Labels({key.first, key.second}).Set(n);
}

// ---------------------------------------------------------------- observation

uint64_t PoolManager::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

uint64_t PoolManager::WaitForChange(uint64_t seen, absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  version_changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return version_ != seen; });
  return version_;
}

void PoolManager::BumpVersion() {
  ++version_;
  version_changed_.notify_all();
}

absl::Status PoolManager::CheckInvariants() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, int> attachments_per_device;
  for (const auto& [id, a] : attachments_) {
    if (++attachments_per_device[a.device_id] > 1) {
      return absl::InternalError(absl::StrCat("device ", a.device_id, " has more than one attachment"));
    }
    auto it = devices_.find(a.device_id);
    if (it == devices_.end()) return absl::InternalError(absl::StrCat("attachment ", id, " names a missing device"));
    if (it->second.attachment != id) {
      return absl::InternalError(absl::StrCat("attachment ", id, " is not the one device ", a.device_id, " names"));
    }
    if (it->second.assigned_node != a.node) {
      return absl::InternalError(absl::StrCat("attachment ", id, " is on node ", a.node, " but device ",
                                              a.device_id, " is assigned to \"", it->second.assigned_node, "\""));
    }
  }
  for (const auto& [id, d] : devices_) {
    if (!d.attachment.empty() && attachments_.count(d.attachment) == 0) {
      return absl::InternalError(absl::StrCat("device ", id, " names missing attachment ", d.attachment));
    }
    if (!d.assigned_node.empty() && d.releasing_until > clock_->Now()) {
      return absl::InternalError(absl::StrCat("device ", id, " is both assigned and releasing"));
    }
  }
  return absl::OkStatus();
}

std::vector<Device> PoolManager::Devices() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ValuesOf(devices_);
}

std::vector<Attachment> PoolManager::Attachments() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ValuesOf(attachments_);
}

absl::StatusOr<Device> PoolManager::GetDevice(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = devices_.find(id);
  if (it == devices_.end()) return absl::NotFoundError(absl::StrCat("device ", id, " is unknown"));
  return it->second;
}

std::vector<Decision> PoolManager::TakeDecisions() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Decision> out;
  out.swap(decisions_);
  return out;
}

}  // namespace rpci::controller
