#include "plugin/kubelet_endpoint.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <functional>

#include "common/grpc_util.h"
#include "common/unix_grpc.h"

namespace rpci::plugin {
namespace {

constexpr char kKubeletSocket[] = "kubelet.sock";
constexpr char kApiVersion[] = "v1beta1";

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

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
    return Reply(prefer(*req), resp);
  }

  grpc::Status Allocate(grpc::ServerContext*, const v1beta1::AllocateRequest* req,
                        v1beta1::AllocateResponse* resp) override {
    return Reply(allocate(*req), resp);
  }

  grpc::Status PreStartContainer(grpc::ServerContext*, const v1beta1::PreStartContainerRequest* req,
                                 v1beta1::PreStartContainerResponse*) override {
    return ToGrpc(pre_start(*req));
  }
};

}  // namespace

std::string SocketName(const std::string& pool) { return "rpci-" + pool + ".sock"; }
std::string ResourceName(const std::string& pool) { return "rpci.io/" + pool; }

class KubeletEndpoint::PoolServer {
 public:
  PoolServer(const std::string& plugin_dir, EndpointHandler* h, std::string pool)
      : plugin_dir_(plugin_dir), h_(h), pool_(std::move(pool)), socket_(plugin_dir + "/" + SocketName(pool_)) {}
  ~PoolServer() { Shutdown(); }

  // Serves on the socket with a fresh server, replacing a previous one.
  absl::Status Serve() {
    auto service = std::make_unique<PoolService>();
    const std::string pool = pool_;
    EndpointHandler* p = h_;
    service->allocate = [p, pool](const v1beta1::AllocateRequest& r) { return p->Allocate(pool, r); };
    service->prefer = [p, pool](const v1beta1::PreferredAllocationRequest& r) { return p->Prefer(pool, r); };
    service->pre_start = [p, pool](const v1beta1::PreStartContainerRequest& r) { return p->PreStart(pool, r); };
    service->list = [p, pool] { return p->DeviceList(pool); };
    service->version = [p] { return p->version(); };
    service->wait = [p](uint64_t seen, absl::Duration t) { return p->WaitForChange(seen, t); };
    // gRPC unlinks a unix socket's path when its listener shuts down, so the
    // old server must be gone before the new one binds the same path.
    Retire(std::move(service_), std::move(server_));
    std::unique_ptr<grpc::Server> server = ServeUnix(socket_, {service.get()});
    if (server == nullptr) return absl::UnavailableError("pool " + pool_ + ": cannot serve on " + socket_);
    service_ = std::move(service);
    server_ = std::move(server);
    return absl::OkStatus();
  }

  // Registers the pool with the kubelet (which dials us back before it
  // answers).
  absl::Status Register() {
    auto stub = v1beta1::Registration::NewStub(UnixChannel(plugin_dir_ + "/" + kKubeletSocket));
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
    // The server (and the threads that call into the service) goes first: a
    // service must outlive its server.
    StopServer(server, absl::Milliseconds(200));
    service.reset();
  }

  const std::string plugin_dir_;
  EndpointHandler* const h_;
  const std::string pool_;
  const std::string socket_;
  std::unique_ptr<PoolService> service_;
  std::unique_ptr<grpc::Server> server_;
};

KubeletEndpoint::KubeletEndpoint(std::string plugin_dir, std::vector<std::string> pools, EndpointHandler* handler,
                                 Counter* registrations)
    : plugin_dir_(std::move(plugin_dir)),
      pools_(std::move(pools)),
      handler_(handler),
      registrations_counter_(registrations) {}

KubeletEndpoint::~KubeletEndpoint() { Stop(); }

absl::Status KubeletEndpoint::Start() {
  const std::string longest = plugin_dir_ + "/" + kKubeletSocket;
  if (longest.size() >= sizeof(sockaddr_un{}.sun_path) - 16) {
    return absl::InvalidArgumentError("plugin: plugin dir path too long for unix sockets: " + plugin_dir_);
  }
  mkdir(plugin_dir_.c_str(), 0750);
  for (const std::string& pool : pools_) {
    auto server = std::make_unique<PoolServer>(plugin_dir_, handler_, pool);
    if (absl::Status s = server->Serve(); !s.ok()) return s;
    servers_[pool] = std::move(server);
  }
  stopping_ = false;
  // The watch exists before the first registration attempt, so a kubelet
  // socket created in between is seen rather than waited for by polling.
  auto dir_watch = DirWatch::Open(plugin_dir_);
  if (!dir_watch.ok()) {
    log_.Error("kubelet restarts are noticed by polling only", {{"error", std::string(dir_watch.status().message())}});
  }
  // Served first; registration comes after (the kubelet dials back at once).
  RegisterAll(/*reserve=*/false);
  watch_ = std::thread([this, w = dir_watch.ok() ? *std::move(dir_watch) : nullptr]() mutable {
    WatchLoop(std::move(w));
  });
  return absl::OkStatus();
}

void KubeletEndpoint::Stop() {
  stopping_ = true;
  if (watch_.joinable()) watch_.join();
  std::lock_guard<std::mutex> lock(registration_mu_);
  for (auto& [pool, server] : servers_) {
    server->Shutdown();
    unlink(server->socket().c_str());
  }
  servers_.clear();
}

void KubeletEndpoint::RegisterAll(bool reserve) {
  std::lock_guard<std::mutex> lock(registration_mu_);
  unregistered_.clear();
  if (!Exists(plugin_dir_ + "/" + kKubeletSocket)) {
    for (const auto& [pool, server] : servers_) unregistered_.insert(pool);
    log_.Info("kubelet socket absent; will register when it appears", {{"dir", plugin_dir_}});
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
    if (registrations_counter_ != nullptr) registrations_counter_->Increment();
    log_.Info("registered with kubelet", {{"resource", ResourceName(pool)}, {"endpoint", SocketName(pool)}});
  }
}

void KubeletEndpoint::WatchLoop(std::unique_ptr<DirWatch> dir_watch) {
  absl::Time last_retry = absl::Now();
  while (!stopping_) {
    bool kubelet_started = false;
    if (dir_watch == nullptr) absl::SleepFor(absl::Milliseconds(100));
    for (const DirEvent& e : dir_watch ? dir_watch->Wait(absl::Milliseconds(100)) : std::vector<DirEvent>{}) {
      kubelet_started |= e.name == kKubeletSocket;
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
}

}  // namespace rpci::plugin
