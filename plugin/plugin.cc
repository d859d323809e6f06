#include "plugin/plugin.h"

#include <errno.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "absl/strings/str_join.h"
#include "plugin/container_edits.h"
#include "plugin/preferred.h"
#include "proto/kubelet/podresources/v1/api.grpc.pb.h"

namespace rpci::plugin {
namespace {

constexpr char kKubeletSocket[] = "kubelet.sock";
constexpr char kApiVersion[] = "v1beta1";

absl::Status Prefixed(const absl::Status& s, const std::string& prefix) {
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

// Unix-socket channel that notices a (re)appearing peer quickly.
std::shared_ptr<grpc::Channel> UnixChannel(const std::string& path) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  return grpc::CreateCustomChannel("unix:" + path, grpc::InsecureChannelCredentials(), args);
}

std::string AllocationName() {
  std::random_device rd;
  std::string bytes(6, '\0');
  for (char& c : bytes) c = static_cast<char>(rd() & 0xff);
  return "alloc-" + absl::BytesToHexString(bytes);
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

std::string SocketName(const std::string& pool) { return "rpci-" + pool + ".sock"; }
std::string ResourceName(const std::string& pool) { return "rpci.io/" + pool; }

// ---------------------------------------------------------------- pool server

// DevicePlugin for one pool; a fresh instance per (re)serve.
class PoolService final : public v1beta1::DevicePlugin::Service {
 public:
  using AllocateFn = std::function<absl::StatusOr<v1beta1::AllocateResponse>(const v1beta1::AllocateRequest&)>;
  using PreferFn = std::function<absl::StatusOr<v1beta1::PreferredAllocationResponse>(
      const v1beta1::PreferredAllocationRequest&)>;
  using PreStartFn = std::function<absl::Status(const v1beta1::PreStartContainerRequest&)>;
  using ListFn = std::function<v1beta1::ListAndWatchResponse()>;
  using VersionFn = std::function<uint64_t()>;
  using WaitFn = std::function<uint64_t(uint64_t, absl::Duration)>;

  AllocateFn allocate;
  PreferFn prefer;
  PreStartFn pre_start;
  ListFn list;
  VersionFn version;
  WaitFn wait;
  std::atomic<bool> stopping{false};

  grpc::Status GetDevicePluginOptions(grpc::ServerContext*, const v1beta1::Empty*,
                                      v1beta1::DevicePluginOptions* resp) override {
    resp->set_pre_start_required(true);
    resp->set_get_preferred_allocation_available(true);
    return grpc::Status::OK;
  }

  grpc::Status ListAndWatch(grpc::ServerContext* ctx, const v1beta1::Empty*,
                            grpc::ServerWriter<v1beta1::ListAndWatchResponse>* writer) override {
    uint64_t seen = 0;
    std::string last;
    bool first = true;
    while (!stopping && !ctx->IsCancelled()) {
      const uint64_t v = version();
      if (v != seen) {
        seen = v;
        v1beta1::ListAndWatchResponse resp = list();
        std::string bytes = resp.SerializeAsString();
        if (first || bytes != last) {
          if (!writer->Write(resp)) break;
          last = std::move(bytes);
          first = false;
        }
      }
      wait(seen, absl::Milliseconds(100));
    }
    return grpc::Status::OK;
  }

  grpc::Status GetPreferredAllocation(grpc::ServerContext*, const v1beta1::PreferredAllocationRequest* req,
                                      v1beta1::PreferredAllocationResponse* resp) override {
    absl::StatusOr<v1beta1::PreferredAllocationResponse> r = prefer(*req);
    if (!r.ok()) return ToGrpc(r.status());
    *resp = *std::move(r);
    return grpc::Status::OK;
  }

  grpc::Status Allocate(grpc::ServerContext*, const v1beta1::AllocateRequest* req,
                        v1beta1::AllocateResponse* resp) override {
    absl::StatusOr<v1beta1::AllocateResponse> r = allocate(*req);
    if (!r.ok()) return ToGrpc(r.status());
    *resp = *std::move(r);
    return grpc::Status::OK;
  }

  grpc::Status PreStartContainer(grpc::ServerContext*, const v1beta1::PreStartContainerRequest* req,
                                 v1beta1::PreStartContainerResponse*) override {
    return ToGrpc(pre_start(*req));
  }
};

class Plugin::PoolServer {
 public:
  PoolServer(Plugin* p, std::string pool)
      : p_(p), pool_(std::move(pool)), socket_(p->options_.plugin_dir + "/" + SocketName(pool_)) {}
  ~PoolServer() { Shutdown(); }

  // Serves on the socket with a fresh server, replacing a previous one.
  absl::Status Serve() {
    auto service = std::make_unique<PoolService>();
    const std::string pool = pool_;
    Plugin* p = p_;
    service->allocate = [p, pool](const v1beta1::AllocateRequest& r) { return p->Allocate(pool, r); };
    service->prefer = [p, pool](const v1beta1::PreferredAllocationRequest& r) { return p->Prefer(pool, r); };
    service->pre_start = [p, pool](const v1beta1::PreStartContainerRequest& r) { return p->PreStart(pool, r); };
    service->list = [p, pool] { return p->DeviceList(pool); };
    service->version = [p] { return p->version(); };
    service->wait = [p](uint64_t seen, absl::Duration t) { return p->WaitForChange(seen, t); };
    // gRPC unlinks a unix socket's path when its listener shuts down, so the
    // old server must be gone before the new one binds the same path.
    Retire(std::move(service_), std::move(server_));
    unlink(socket_.c_str());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_, grpc::InsecureServerCredentials());
    builder.RegisterService(service.get());
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (server == nullptr) return absl::UnavailableError("pool " + pool_ + ": cannot serve on " + socket_);
    service_ = std::move(service);
    server_ = std::move(server);
    return absl::OkStatus();
  }

  // Registers the pool with the kubelet (which dials us back before it
  // answers).
  absl::Status Register() {
    auto stub = v1beta1::Registration::NewStub(UnixChannel(p_->options_.plugin_dir + "/" + kKubeletSocket));
    v1beta1::RegisterRequest req;
    req.set_version(kApiVersion);
    req.set_endpoint(SocketName(pool_));
    req.set_resource_name(ResourceName(pool_));
    req.mutable_options()->set_pre_start_required(true);
    req.mutable_options()->set_get_preferred_allocation_available(true);
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(5)));
    ctx.set_wait_for_ready(true);  // kubelet.sock may be bound but not yet listening
    v1beta1::Empty resp;
    grpc::Status s = stub->Register(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc(s, "register " + ResourceName(pool_) + " with the kubelet");
    return absl::OkStatus();
  }

  void Shutdown() { Retire(std::move(service_), std::move(server_)); }
  const std::string& socket() const { return socket_; }

 private:
  static void Retire(std::unique_ptr<PoolService> service, std::unique_ptr<grpc::Server> server) {
    if (service) service->stopping = true;
    if (server) server->Shutdown(In(absl::Milliseconds(200)));
    // The server (and the threads that call into the service) goes first: a
    // service must outlive its server.
    server.reset();
    service.reset();
  }

  Plugin* p_;
  const std::string pool_;
  const std::string socket_;
  std::unique_ptr<PoolService> service_;
  std::unique_ptr<grpc::Server> server_;
};

// ---------------------------------------------------------------- plugin

Plugin::Plugin(PluginOptions options, ControllerApi* controller, SessionOpener* sessions)
    : options_(std::move(options)), controller_(controller), sessions_(sessions) {
  if (options_.metrics == nullptr) own_metrics_ = std::make_unique<MetricsRegistry>();
  metrics_ = options_.metrics ? options_.metrics : own_metrics_.get();
  allocations_ = &metrics_->AddCounter("rpci_plugin_allocations_total", "Allocate calls by pool and result",
                                       {"pool", "result"});
  sessions_gauge_ = &metrics_->AddGauge("rpci_plugin_sessions", "Sessions held for containers").Get();
  kubelet_registrations_ =
      &metrics_->AddCounter("rpci_plugin_kubelet_registrations_total", "Successful registrations with the kubelet")
           .Get();
}

Plugin::~Plugin() { Stop(); }

absl::Status Plugin::Start() {
  if (options_.node_name.empty()) return absl::InvalidArgumentError("plugin: node name is empty");
  if (options_.pools.empty()) return absl::InvalidArgumentError("plugin: no pools");
  for (const std::string& pool : options_.pools) {
    if (pool.empty() || pool.find_first_of("/= ") != std::string::npos) {
      return absl::InvalidArgumentError("plugin: invalid pool name \"" + pool + "\"");
    }
  }
  const std::string longest = options_.plugin_dir + "/" + kKubeletSocket;
  if (longest.size() >= sizeof(sockaddr_un{}.sun_path) - 16) {
    return absl::InvalidArgumentError("plugin: plugin dir path too long for unix sockets: " + options_.plugin_dir);
  }
  mkdir(options_.plugin_dir.c_str(), 0750);
  for (const std::string& pool : options_.pools) {
    auto server = std::make_unique<PoolServer>(this, pool);
    if (absl::Status s = server->Serve(); !s.ok()) return s;
    servers_[pool] = std::move(server);
  }
  stopping_ = false;
  // The watch exists before the first registration attempt, so a kubelet
  // socket created in between is seen rather than waited for by polling.
  const int inotify_fd = WatchPluginDir();
  // Served first; registration comes after (the kubelet dials back at once).
  RegisterAll(/*reserve=*/false);
  threads_.emplace_back([this, inotify_fd] { KubeletWatchLoop(inotify_fd); });
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
  std::lock_guard<std::mutex> lock(registration_mu_);
  for (auto& [pool, server] : servers_) {
    server->Shutdown();
    unlink(server->socket().c_str());
  }
}

void Plugin::RegisterAll(bool reserve) {
  std::lock_guard<std::mutex> lock(registration_mu_);
  unregistered_.clear();
  if (!Exists(options_.plugin_dir + "/" + kKubeletSocket)) {
    for (const auto& [pool, server] : servers_) unregistered_.insert(pool);
    log_.Info("kubelet socket absent; will register when it appears", {{"dir", options_.plugin_dir}});
    return;
  }
  for (auto& [pool, server] : servers_) {
    absl::Status s = reserve ? server->Serve() : absl::OkStatus();
    if (s.ok()) s = server->Register();
    if (!s.ok()) {
      unregistered_.insert(pool);
      log_.Warn("registration failed", {{"pool", pool}, {"error", std::string(s.message())}});
      continue;
    }
    ++registrations_;
    kubelet_registrations_->Inc();
    log_.Info("registered with kubelet", {{"resource", ResourceName(pool)}, {"endpoint", SocketName(pool)}});
  }
}

int Plugin::WatchPluginDir() {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd >= 0 && inotify_add_watch(fd, options_.plugin_dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    close(fd);
    fd = -1;
  }
  if (fd < 0) {
    log_.Error("inotify on plugin dir failed; kubelet restarts are noticed by polling only",
               {{"dir", options_.plugin_dir}, {"error", std::strerror(errno)}});
  }
  return fd;
}

void Plugin::KubeletWatchLoop(int fd) {
  absl::Time last_retry = absl::Now();
  alignas(inotify_event) char buf[4096];
  while (!stopping_) {
    pollfd pfd{fd, POLLIN, 0};
    const int n = fd >= 0 ? poll(&pfd, 1, 100) : (usleep(100 * 1000), 0);
    bool kubelet_started = false;
    if (n > 0) {
      ssize_t len;
      while ((len = read(fd, buf, sizeof(buf))) > 0) {
        for (char* p = buf; p < buf + len;) {
          auto* ev = reinterpret_cast<inotify_event*>(p);
          if (ev->len > 0 && std::strcmp(ev->name, kKubeletSocket) == 0) kubelet_started = true;
          p += sizeof(inotify_event) + ev->len;
        }
      }
    }
    if (stopping_) break;
    if (kubelet_started) {
      // The kubelet removed our sockets when it restarted: serve again, then
      // register. Sessions are untouched.
      log_.Info("kubelet socket created; re-registering", {});
      RegisterAll(/*reserve=*/true);
      last_retry = absl::Now();
      continue;
    }
    bool retry;
    {
      std::lock_guard<std::mutex> lock(registration_mu_);
      retry = !unregistered_.empty();
    }
    if (retry && absl::Now() - last_retry >= absl::Seconds(1)) {
      RegisterAll(/*reserve=*/true);
      last_retry = absl::Now();
    }
  }
  if (fd >= 0) close(fd);
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
  std::vector<std::string> out;
  for (const auto& [id, h] : held_) out.push_back(id);
  return out;
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
  if (!s.session_id.empty()) {
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
  log_.Info("released device", {{"device", s.device_id}, {"session", s.session_id}, {"reason", reason}});
}

absl::StatusOr<v1beta1::AllocateResponse> Plugin::Allocate(const std::string& pool,
                                                           const v1beta1::AllocateRequest& req) {
  const std::string what = "Allocate " + ResourceName(pool) + ": ";
  std::vector<std::string> ids;
  std::map<std::string, rpci::v1::Assignment> assigned;
  std::vector<Held> stale;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string> seen;
    for (const auto& creq : req.container_requests()) {
      if (creq.devices_ids().empty()) return absl::InvalidArgumentError(what + "a container request names no device");
      for (const std::string& id : creq.devices_ids()) {
        auto it = assignments_.find(id);
        if (it == assignments_.end() || it->second.device().pool() != pool) {
          allocations_->Labels({pool, "rejected"}).Inc();
          return absl::InvalidArgumentError(
              absl::StrCat(what, "device ", id, " is not assigned to node ", options_.node_name, " in pool ", pool));
        }
        if (!seen.insert(id).second || allocating_.count(id)) {
          allocations_->Labels({pool, "rejected"}).Inc();
          return absl::FailedPreconditionError(absl::StrCat(what, "device ", id, " is requested twice"));
        }
        assigned[id] = it->second;
        ids.push_back(id);
      }
    }
    // The kubelet only hands out devices it considers free: a session still
    // held for one belongs to a pod that is gone.
    for (const std::string& id : ids) {
      if (auto it = held_.find(id); it != held_.end()) {
        stale.push_back(std::move(it->second));
        held_.erase(it);
      }
      allocating_.insert(id);
    }
  }
  for (const Held& h : stale) ReleaseHeld(h, "Reallocated");

  std::vector<Held> done;  // acquired so far; released on failure
  auto fail = [&](const absl::Status& cause) -> absl::Status {
    for (const Held& h : done) ReleaseHeld(h, "AllocateFailed");
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& id : ids) allocating_.erase(id);
    ++version_;
    changed_.notify_all();
    allocations_->Labels({pool, "failed"}).Inc();
    log_.Warn("allocate failed", {{"pool", pool}, {"error", std::string(cause.message())}});
    return Prefixed(cause, what);
  };

  v1beta1::AllocateResponse resp;
  const std::string allocation = AllocationName();
  for (const auto& creq : req.container_requests()) {
    std::vector<AttachedSession> sessions;
    std::vector<SessionPaths> paths;
    for (const std::string& id : creq.devices_ids()) {
      const rpci::v1::Assignment& a = assigned[id];
      rpci::v1::ClaimRequest claim;
      claim.set_node(options_.node_name);
      claim.set_device_id(id);
      // Allocate does not say which pod: the claim is for this allocation
      // (no namespace), and the usage report names the pod once
      // pod-resources lists it.
      claim.set_pod_name(allocation);
      absl::StatusOr<rpci::v1::ClaimResponse> granted = controller_->Claim(claim);
      if (!granted.ok() && granted.status().code() == absl::StatusCode::kFailedPrecondition) {
        // Attached to an earlier allocation on this node that we no longer
        // hold (e.g. the plugin restarted): release it and claim again.
        rpci::v1::ReleaseRequest rel;
        rel.set_node(options_.node_name);
        rel.set_device_id(id);
        rel.set_reason("StaleAllocation");
        if (controller_->Release(rel).ok()) granted = controller_->Claim(claim);
      }
      if (!granted.ok()) return fail(granted.status());
      Held h;
      h.pool = pool;
      h.allocated = absl::Now();
      h.session.device_id = id;
      h.session.grant_id = granted->grant().grant_id();
      done.push_back(h);
      const std::string endpoint =
          granted->agent_session_endpoint().empty() ? a.agent_session_endpoint() : granted->agent_session_endpoint();
      absl::StatusOr<AttachedSession> opened = sessions_->Open(granted->grant(), endpoint);
      if (!opened.ok()) return fail(opened.status());
      if (opened->fabric_provider.empty()) opened->fabric_provider = a.agent_fabric_provider();
      opened->ca_pem = options_.session_ca_pem;
      done.back().session = *opened;
      absl::StatusOr<std::vector<std::string>> nodes =
          SessionDeviceNodes(opened->fabric_provider, opened->endpoint, options_.sysfs_root);
      if (!nodes.ok()) {
        return fail(absl::Status(nodes.status().code(), absl::StrCat("device ", id, ": ", nodes.status().message())));
      }
      opened->device_nodes = *std::move(nodes);
      SessionPaths p = PathsFor(options_.state_dir, options_.container_dir, id);
      if (absl::Status s = WriteSessionDir(*opened, p, static_cast<int>(options_.session_group)); !s.ok()) {
        return fail(s);
      }
      if (absl::Status s = WriteCdiSpec(options_.cdi_dir, pool, static_cast<int>(sessions.size()), *opened, p);
          !s.ok()) {
        return fail(s);
      }
      sessions.push_back(*opened);
      paths.push_back(p);
    }
    *resp.add_container_responses() = BuildContainerResponse(pool, sessions, paths);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (Held& h : done) held_[h.session.device_id] = std::move(h);
  for (const std::string& id : ids) allocating_.erase(id);
  sessions_gauge_->Set(static_cast<double>(held_.size()));
  ++version_;
  changed_.notify_all();
  allocations_->Labels({pool, "ok"}).Inc();
  log_.Info("allocated", {{"pool", pool}, {"devices", absl::StrJoin(ids, ",")}});
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
    if (it == held_.end() || it->second.session.session_id.empty() || it->second.live == ok) continue;
    it->second.live = ok;
    changed = true;
    log_.Info(ok ? "session live again" : "session lost", {{"device", id}});
  }
  if (changed) {
    ++version_;
    changed_.notify_all();
  }
}

absl::Status Plugin::SyncUsage() {
  auto stub = ::v1::PodResourcesLister::NewStub(UnixChannel(options_.pod_resources_socket));
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(2)));
  ::v1::ListPodResourcesResponse pods;
  grpc::Status gs = stub->List(&ctx, ::v1::ListPodResourcesRequest(), &pods);
  // Without the kubelet's view nothing is released.
  if (!gs.ok()) return FromGrpc(gs, "pod-resources List on " + options_.pod_resources_socket);

  std::set<std::string> resources;
  for (const std::string& pool : options_.pools) resources.insert(ResourceName(pool));
  struct Owner {
    std::string ns, pod, container;
  };
  std::map<std::string, Owner> owners;
  for (const ::v1::PodResources& p : pods.pod_resources()) {
    for (const ::v1::ContainerResources& c : p.containers()) {
      for (const ::v1::ContainerDevices& d : c.devices()) {
        if (!resources.count(d.resource_name())) continue;
        for (const std::string& id : d.device_ids()) owners[id] = {p.namespace_(), p.name(), c.name()};
      }
    }
  }
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
      u->set_session_id(it->second.session.session_id);
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
