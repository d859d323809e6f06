#include "plugin/dra_driver.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/map_keys.h"
#include "nlohmann/json.hpp"

namespace rpci::plugin {
namespace {

constexpr int kCheckpointVersion = 1;

std::string ClaimName(const drapb::Claim& c) { return absl::StrCat(c.namespace_(), "/", c.name()); }

// The claim's files and sessions on this host live under its own directory,
// so two claims never share a path.
std::string ClaimStateDir(const std::string& state_dir, const std::string& uid) {
  return absl::StrCat(state_dir, "/claims/", uid);
}

// A name that may become a path component and a CDI device name (CDI:
// [A-Za-z0-9][A-Za-z0-9_.:-]*).
bool SafeName(const std::string& s) {
  if (s.empty() || s.size() > 128 || !std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  for (char ch : s) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.' && ch != ':') return false;
  }
  return true;
}

// A uid becomes part of paths and CDI names: a Kubernetes uid is a UUID.
absl::Status CheckClaim(const drapb::Claim& c) {
  if (c.uid().empty() || c.namespace_().empty() || c.name().empty()) {
    return absl::InvalidArgumentError("claim needs namespace, name and uid");
  }
  for (char ch : c.uid()) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-') {
      return absl::InvalidArgumentError("claim uid \"" + c.uid() + "\" is not a UUID");
    }
  }
  return absl::OkStatus();
}

nlohmann::json DeviceJson(const PreparedClaim::Device& d) {
  nlohmann::json bars = nlohmann::json::array();
  for (const client::BarMirror& b : d.session.ticket.bars) bars.push_back({{"index", b.index}, {"size", b.size}});
  return {{"request", d.request},
          {"pool", d.pool},
          {"device", d.device},
          {"device_id", d.session.device_id},
          {"grant_id", d.session.grant_id},
          {"session_id", d.session.ticket.session_id.ToString()},
          {"endpoint", d.session.ticket.endpoint},
          {"fabric_provider", d.session.ticket.fabric_provider},
          {"bars", bars},
          {"dma_size", d.session.ticket.dma_size},
          {"device_nodes", d.session.device_nodes},
          {"host_dir", d.paths.host_dir},
          {"container_dir", d.paths.container_dir},
          {"cdi_id", d.cdi_id}};
}

// The session key, from the session dir (the checkpoint never holds it).
absl::StatusOr<session::SessionKey> ReadKey(const SessionPaths& paths) {
  std::ifstream key_file(paths.host_dir + "/key");
  std::string hex;
  key_file >> hex;
  return session::SessionKey::FromHex(hex);
}

// A device as checkpointed, without its key.
absl::StatusOr<PreparedClaim::Device> DeviceFromJson(const nlohmann::json& j) {
  PreparedClaim::Device d;
  d.request = j.at("request").get<std::string>();
  d.pool = j.at("pool").get<std::string>();
  d.device = j.at("device").get<std::string>();
  d.session.device_id = j.at("device_id").get<std::string>();
  d.session.grant_id = j.at("grant_id").get<std::string>();
  absl::StatusOr<session::SessionId> id = session::SessionId::Parse(j.at("session_id").get<std::string>());
  if (!id.ok()) return id.status();
  d.session.ticket.session_id = *id;
  d.session.ticket.endpoint = j.at("endpoint").get<std::string>();
  d.session.ticket.fabric_provider = j.at("fabric_provider").get<std::string>();
  for (const nlohmann::json& b : j.at("bars")) {
    d.session.ticket.bars.push_back({b.at("index").get<uint16_t>(), b.at("size").get<uint64_t>()});
  }
  d.session.ticket.dma_size = j.at("dma_size").get<uint64_t>();
  d.session.device_nodes = j.at("device_nodes").get<std::vector<std::string>>();
  d.paths.host_dir = j.at("host_dir").get<std::string>();
  d.paths.container_dir = j.at("container_dir").get<std::string>();
  d.cdi_id = j.at("cdi_id").get<std::string>();
  return d;
}

rpci::v1::NodeClaimRequest ControllerRequest(const std::string& node, const drapb::Claim& claim) {
  rpci::v1::NodeClaimRequest req;
  req.set_node(node);
  req.set_claim_namespace(claim.namespace_());
  req.set_claim_name(claim.name());
  req.set_claim_uid(claim.uid());
  return req;
}

drapb::NodePrepareResourceResponse Answer(const PreparedClaim& claim) {
  drapb::NodePrepareResourceResponse r;
  for (const PreparedClaim::Device& d : claim.devices) {
    drapb::Device* out = r.add_devices();
    if (!d.request.empty()) out->add_request_names(d.request);
    out->set_pool_name(d.pool);
    out->set_device_name(d.device);
    out->add_cdi_device_ids(d.cdi_id);
  }
  return r;
}

}  // namespace

class DraDriver::ClaimLock {
 public:
  ClaimLock(DraDriver* d, std::string uid) : d_(d), uid_(std::move(uid)) {
    std::unique_lock<std::mutex> lock(d_->mu_);
    d_->released_.wait(lock, [&] { return d_->busy_.count(uid_) == 0; });
    d_->busy_.insert(uid_);
  }
  ~ClaimLock() {
    {
      std::lock_guard<std::mutex> lock(d_->mu_);
      d_->busy_.erase(uid_);
    }
    d_->released_.notify_all();
  }
  ClaimLock(const ClaimLock&) = delete;
  ClaimLock& operator=(const ClaimLock&) = delete;

 private:
  DraDriver* const d_;
  const std::string uid_;
};

std::string ClaimCdiId(const std::string& claim_uid, const std::string& device) {
  return absl::StrCat(kClaimCdiKind, "=", claim_uid, "-", device);
}

std::string ClaimCdiSpecPath(const std::string& cdi_dir, const std::string& claim_uid) {
  return absl::StrCat(cdi_dir, "/rpci.io-claim-", claim_uid, ".json");
}

std::string DraCheckpointPath(const std::string& state_dir) { return state_dir + "/dra-checkpoint.json"; }

DraDriver::DraDriver(PluginOptions options, ClaimPreparer* controller, SessionOpener* sessions)
    : options_(std::move(options)), controller_(controller), sessions_(sessions) {
  if (options_.metrics == nullptr) own_metrics_ = std::make_unique<MetricsRegistry>();
  MetricsRegistry* metrics = options_.metrics ? options_.metrics : own_metrics_.get();
  prepares_ = &metrics->AddCounter("rpci_plugin_dra_claims_total", "DRA claim operations by operation and result",
                                   {"op", "result"});
  Counter* registrations =
      &metrics->AddCounter("rpci_plugin_dra_registrations_total", "Successful DRA registrations with the kubelet")
           .Get();
  DraHandler* handler = this;  // a private base: converted here, where it is accessible
  endpoint_ = std::make_unique<DraEndpoint>(options_.kubelet_dir, kDraDriverName, handler, registrations);
}

DraDriver::~DraDriver() { Stop(); }

absl::Status DraDriver::Start() {
  if (absl::Status s = CheckNodeAndPools(options_.node_name, options_.dra_pools, "DRA pools"); !s.ok()) return s;
  LoadCheckpoint();
  return endpoint_->Start();
}

void DraDriver::Stop() { endpoint_->Stop(); }

std::vector<std::string> DraDriver::PreparedClaims() const {
  std::lock_guard<std::mutex> lock(mu_);
  return KeysOf(prepared_);
}

// ---------------------------------------------------------------- prepare

drapb::NodePrepareResourcesResponse DraDriver::Prepare(const drapb::NodePrepareResourcesRequest& req) {
  drapb::NodePrepareResourcesResponse resp;
  for (const drapb::Claim& claim : req.claims()) {
    absl::StatusOr<PreparedClaim> prepared = PrepareOne(claim);
    drapb::NodePrepareResourceResponse& entry = (*resp.mutable_claims())[claim.uid()];
    if (prepared.ok()) {
      entry = Answer(*prepared);
      prepares_->Labels({"prepare", "ok"}).Increment();
    } else {
      entry.set_error(absl::StrCat("claim ", ClaimName(claim), ": ", prepared.status().message()));
      prepares_->Labels({"prepare", "failed"}).Increment();
      log_.Warn("prepare failed", {{"claim", ClaimName(claim)}, {"uid", claim.uid()}, {"error", entry.error()}});
    }
  }
  return resp;
}

absl::StatusOr<PreparedClaim> DraDriver::PrepareOne(const drapb::Claim& claim) {
  if (absl::Status s = CheckClaim(claim); !s.ok()) return s;
  ClaimLock hold(this, claim.uid());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = prepared_.find(claim.uid()); it != prepared_.end()) {
      // Prepared already (a kubelet retry or restart): the same answer. The
      // CDI dir may be a tmpfs the host lost since.
      if (access(ClaimCdiSpecPath(options_.cdi_dir, claim.uid()).c_str(), F_OK) != 0) {
        if (absl::Status s = WriteClaimCdiSpec(it->second); !s.ok()) return s;
      }
      return it->second;
    }
  }
  absl::StatusOr<rpci::v1::PrepareClaimResponse> granted =
      controller_->PrepareClaim(ControllerRequest(options_.node_name, claim));
  if (!granted.ok()) return granted.status();
  PreparedClaim prepared{claim.namespace_(), claim.name(), claim.uid(), {}};
  absl::Status s = granted->devices().empty() ? absl::FailedPreconditionError("the controller granted no device")
                                              : absl::OkStatus();
  for (const rpci::v1::PreparedDevice& d : granted->devices()) {
    if (s.ok()) s = OpenDevice(d, prepared);
  }
  if (s.ok()) s = WriteClaimCdiSpec(prepared);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    prepared_[claim.uid()] = prepared;
    s = SaveCheckpoint();
    if (!s.ok()) prepared_.erase(claim.uid());
  }
  if (!s.ok()) {
    // Give back what was acquired: the kubelet will call again.
    ReleaseSessions(prepared, "PrepareFailed");
    if (absl::Status u = controller_->UnprepareClaim(ControllerRequest(options_.node_name, claim)); !u.ok()) {
      log_.Warn("unprepare after a failed prepare failed", {{"claim", ClaimName(claim)}, {"error", std::string(u.message())}});
    }
    return s;
  }
  log_.Info("prepared claim", {{"claim", ClaimName(claim)}, {"uid", claim.uid()}, {"devices", prepared.devices.size()}});
  return prepared;
}

absl::Status DraDriver::OpenDevice(const rpci::v1::PreparedDevice& d, PreparedClaim& claim) {
  const std::string& id = d.grant().device_id();
  if (std::find(options_.dra_pools.begin(), options_.dra_pools.end(), d.pool()) == options_.dra_pools.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", d.device(), ": pool ", d.pool(), " is not served through DRA on node ", options_.node_name));
  }
  if (!SafeName(id) || !SafeName(d.device())) {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", d.device(), "\" (id \"", id, "\"): not a name rpci can use in paths and CDI ids"));
  }
  absl::StatusOr<AttachedSession> opened = sessions_->Open(d.grant(), d.agent_session_endpoint());
  if (!opened.ok()) return opened.status();
  PreparedClaim::Device dev;
  dev.request = d.request();
  dev.pool = d.pool();
  dev.device = d.device();
  dev.cdi_id = ClaimCdiId(claim.uid, d.device());
  dev.paths = PathsFor(ClaimStateDir(options_.state_dir, claim.uid), options_.container_dir, id);
  opened->ca_pem = options_.session_ca_pem;
  dev.session = *opened;
  claim.devices.push_back(dev);  // from here on, released on failure
  absl::StatusOr<std::vector<std::string>> nodes =
      SessionDeviceNodes(opened->ticket.fabric_provider, opened->ticket.endpoint, options_.sysfs_root);
  if (!nodes.ok()) return absl::Status(nodes.status().code(), absl::StrCat("device ", id, ": ", nodes.status().message()));
  claim.devices.back().session.device_nodes = *std::move(nodes);
  return WriteSessionDir(claim.devices.back().session, dev.paths, static_cast<int>(options_.session_group));
}

absl::Status DraDriver::WriteClaimCdiSpec(const PreparedClaim& claim) const {
  if (claim.devices.empty()) return absl::FailedPreconditionError("CDI spec: the claim has no device");
  std::vector<CdiDevice> devices;
  std::vector<AttachedSession> sessions;
  std::vector<SessionPaths> paths;
  for (const PreparedClaim::Device& d : claim.devices) {
    devices.push_back({absl::StrCat(claim.uid, "-", d.device), static_cast<int>(devices.size()), d.session, d.paths});
    sessions.push_back(d.session);
    paths.push_back(d.paths);
  }
  std::map<std::string, std::string> env = SummaryEnv(claim.devices.front().pool, sessions, paths);
  if (options_.fabric_port_low > 0) {
    env["FI_TCP_PORT_LOW_RANGE"] = std::to_string(options_.fabric_port_low);
    env["FI_TCP_PORT_HIGH_RANGE"] = std::to_string(options_.fabric_port_high);
  }
  absl::Status s = WriteCdiSpecFile(options_.cdi_dir, ClaimCdiSpecPath(options_.cdi_dir, claim.uid),
                                    CdiSpecJson(kClaimCdiKind, devices, env));
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat("CDI spec: ", s.message()));
  return absl::OkStatus();
}

void DraDriver::ReleaseSessions(const PreparedClaim& claim, const std::string& reason) {
  for (const PreparedClaim::Device& d : claim.devices) {
    if (absl::Status s = sessions_->Close(d.session); !s.ok()) {
      // The controller's unprepare revokes the grant; the agent ends the
      // session with it.
      log_.Warn("close session failed", {{"device", d.session.device_id}, {"error", std::string(s.message())}});
    }
    RemoveSessionDir(d.paths).IgnoreError();
    log_.Info("released device", {{"device", d.session.device_id}, {"session", d.session.ticket.session_id.ToString()},
                                  {"claim", claim.uid}, {"reason", reason}});
  }
  unlink(ClaimCdiSpecPath(options_.cdi_dir, claim.uid).c_str());
  rmdir(ClaimStateDir(options_.state_dir, claim.uid).c_str());
}

// ---------------------------------------------------------------- unprepare

drapb::NodeUnprepareResourcesResponse DraDriver::Unprepare(const drapb::NodeUnprepareResourcesRequest& req) {
  drapb::NodeUnprepareResourcesResponse resp;
  for (const drapb::Claim& claim : req.claims()) {
    drapb::NodeUnprepareResourceResponse& entry = (*resp.mutable_claims())[claim.uid()];
    if (absl::Status s = UnprepareOne(claim); !s.ok()) {
      entry.set_error(absl::StrCat("claim ", ClaimName(claim), ": ", s.message()));
      prepares_->Labels({"unprepare", "failed"}).Increment();
      log_.Warn("unprepare failed", {{"claim", ClaimName(claim)}, {"uid", claim.uid()}, {"error", entry.error()}});
    } else {
      prepares_->Labels({"unprepare", "ok"}).Increment();
    }
  }
  return resp;
}

absl::Status DraDriver::UnprepareOne(const drapb::Claim& claim) {
  if (absl::Status s = CheckClaim(claim); !s.ok()) return s;
  ClaimLock hold(this, claim.uid());
  PreparedClaim held{claim.namespace_(), claim.name(), claim.uid(), {}};
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = prepared_.find(claim.uid()); it != prepared_.end()) held = it->second;
  }
  // Sessions first: the grant must not outlive a session the agent still
  // serves. Unknown claims are given back all the same (a prepare cut off
  // before its checkpoint).
  ReleaseSessions(held, "Unprepared");
  // The sessions are gone, so the record goes too: if the controller cannot
  // be reached the kubelet calls again, and the claim (unknown here now) is
  // given back then; a prepare in between starts afresh.
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (prepared_.erase(claim.uid()) > 0) {
      if (absl::Status s = SaveCheckpoint(); !s.ok()) return s;
    }
  }
  if (absl::Status s = controller_->UnprepareClaim(ControllerRequest(options_.node_name, claim)); !s.ok()) {
    return s;
  }
  log_.Info("unprepared claim", {{"claim", ClaimName(claim)}, {"uid", claim.uid()}});
  return absl::OkStatus();
}

// ---------------------------------------------------------------- checkpoint

absl::Status DraDriver::SaveCheckpoint() const {
  nlohmann::json claims = nlohmann::json::object();
  for (const auto& [uid, c] : prepared_) {
    nlohmann::json devices = nlohmann::json::array();
    for (const PreparedClaim::Device& d : c.devices) devices.push_back(DeviceJson(d));
    claims[uid] = {{"namespace", c.claim_namespace}, {"name", c.claim_name}, {"devices", devices}};
  }
  nlohmann::json doc = {{"version", kCheckpointVersion}, {"node", options_.node_name}, {"claims", claims}};
  mkdir(options_.state_dir.c_str(), 0755);
  return WriteFileAtomically(DraCheckpointPath(options_.state_dir), doc.dump(2) + "\n", 0600);
}

void DraDriver::LoadCheckpoint() {
  const std::string path = DraCheckpointPath(options_.state_dir);
  std::ifstream in(path);
  if (!in) return;  // first start
  std::stringstream text;
  text << in.rdbuf();
  std::map<std::string, PreparedClaim> loaded;
  absl::Status s;
  try {
    nlohmann::json doc = nlohmann::json::parse(text.str());
    if (doc.at("version").get<int>() != kCheckpointVersion) {
      s = absl::DataLossError(absl::StrCat("checkpoint version ", doc.at("version").dump(), " is not ", kCheckpointVersion));
    }
    for (auto it = doc.at("claims").begin(); s.ok() && it != doc.at("claims").end(); ++it) {
      PreparedClaim c{it->at("namespace").get<std::string>(), it->at("name").get<std::string>(), it.key(), {}};
      for (const nlohmann::json& d : it->at("devices")) {
        absl::StatusOr<PreparedClaim::Device> dev = DeviceFromJson(d);
        if (!dev.ok()) {
          s = dev.status();
          break;
        }
        if (absl::StatusOr<session::SessionKey> key = ReadKey(dev->paths); key.ok()) {
          dev->session.ticket.key = *key;
        } else {
          // Its session cannot be closed by us; the controller's unprepare
          // still ends it.
          log_.Warn("session key unreadable", {{"device", dev->session.device_id}, {"dir", dev->paths.host_dir},
                                               {"error", std::string(key.status().message())}});
        }
        c.devices.push_back(*std::move(dev));
      }
      if (!c.devices.empty()) loaded[it.key()] = std::move(c);  // nothing to answer or release for none
    }
  } catch (const nlohmann::json::exception& e) {
    s = absl::DataLossError(e.what());
  }
  if (!s.ok()) {
    // Kept for inspection; the controller still knows the grants, and the
    // kubelet's next prepare or unprepare of each claim reaches it.
    rename(path.c_str(), (path + ".corrupt").c_str());
    log_.Error("DRA checkpoint unreadable; starting with no prepared claims",
               {{"path", path}, {"kept_as", path + ".corrupt"}, {"error", std::string(s.message())}});
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  prepared_ = std::move(loaded);
  log_.Info("restored prepared claims", {{"claims", prepared_.size()}});
}

}  // namespace rpci::plugin
