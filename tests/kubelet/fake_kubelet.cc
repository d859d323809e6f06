#include "tests/kubelet/fake_kubelet.h"

#include <optional>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_util.h"
#include "common/unix_grpc.h"
#include "tests/kubelet/cdi_runtime.h"

namespace rpci::testing {
namespace {

constexpr char kVersion[] = "v1beta1";


// The kubelet accepts only extended resource names: "<domain>/<name>" with a
// DNS-subdomain domain outside kubernetes.io and a qualified name.
absl::Status CheckResourceName(const std::string& name) {
  static const std::regex kDomain("[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*");
  static const std::regex kName("[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?");
  const size_t slash = name.find('/');
  if (slash == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid resource name \"", name, "\": no domain prefix"));
  }
  const std::string domain = name.substr(0, slash), local = name.substr(slash + 1);
  if (domain == "kubernetes.io" || absl::EndsWith(domain, ".kubernetes.io") || domain.size() > 253 ||
      !std::regex_match(domain, kDomain) || local.size() > 63 || !std::regex_match(local, kName)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid resource name \"", name, "\""));
  }
  return absl::OkStatus();
}

bool IsSocket(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

void RemoveSockets(const std::string& dir) {
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string path = dir + "/" + e->d_name;
      if (IsSocket(path)) unlink(path.c_str());
    }
    closedir(d);
  }
}

}  // namespace

struct FakeKubelet::Endpoint {
  std::string resource;
  std::string socket;
  std::unique_ptr<v1beta1::DevicePlugin::Stub> stub;
  v1beta1::DevicePluginOptions options;
  grpc::ClientContext watch_ctx;
  std::vector<AdvertisedDevice> devices;
  int updates = 0;
  bool connected = true;
};

class FakeKubelet::RegistrationService final : public v1beta1::Registration::Service {
 public:
  explicit RegistrationService(FakeKubelet* k) : k_(k) {}
  grpc::Status Register(grpc::ServerContext*, const v1beta1::RegisterRequest* req, v1beta1::Empty*) override {
    return ToGrpc(k_->Register(*req));
  }

 private:
  FakeKubelet* k_;
};

class FakeKubelet::PodResourcesService final : public ::v1::PodResourcesLister::Service {
 public:
  explicit PodResourcesService(FakeKubelet* k) : k_(k) {}
  grpc::Status List(grpc::ServerContext*, const ::v1::ListPodResourcesRequest*,
                    ::v1::ListPodResourcesResponse* resp) override {
    *resp = k_->ListPods();
    return grpc::Status::OK;
  }
  grpc::Status Get(grpc::ServerContext*, const ::v1::GetPodResourcesRequest* req,
                   ::v1::GetPodResourcesResponse* resp) override {
    const ::v1::ListPodResourcesResponse pods = k_->ListPods();  // the loop must not outlive it
    for (const ::v1::PodResources& p : pods.pod_resources()) {
      if (p.name() == req->pod_name() && p.namespace_() == req->pod_namespace()) {
        *resp->mutable_pod_resources() = p;
        return grpc::Status::OK;
      }
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("pod ", req->pod_namespace(), "/", req->pod_name(), " not found"));
  }
  grpc::Status GetAllocatableResources(grpc::ServerContext*, const ::v1::AllocatableResourcesRequest*,
                                       ::v1::AllocatableResourcesResponse*) override {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "GetAllocatableResources is not served by the fake kubelet");
  }

 private:
  FakeKubelet* k_;
};

FakeKubelet::FakeKubelet(std::string plugin_dir, std::string pod_resources_socket, std::string cdi_dir)
    : plugin_dir_(std::move(plugin_dir)),
      pod_resources_socket_(std::move(pod_resources_socket)),
      cdi_dir_(std::move(cdi_dir)) {}

FakeKubelet::~FakeKubelet() { Stop(); }

absl::Status FakeKubelet::Start() {
  mkdir(plugin_dir_.c_str(), 0750);
  // The kubelet removes every socket left in the directory at start.
  RemoveSockets(plugin_dir_);
  registration_service_ = std::make_unique<RegistrationService>(this);
  pod_resources_service_ = std::make_unique<PodResourcesService>(this);

  pod_resources_server_ = ServeUnix(pod_resources_socket_, {pod_resources_service_.get()});
  if (pod_resources_server_ == nullptr) {
    return absl::UnavailableError("fake kubelet: cannot serve pod-resources on " + pod_resources_socket_);
  }
  registration_server_ = ServeUnix(kubelet_socket(), {registration_service_.get()});
  if (registration_server_ == nullptr) {
    return absl::UnavailableError("fake kubelet: cannot serve registration on " + kubelet_socket());
  }
  return absl::OkStatus();
}

void FakeKubelet::Stop() {
  StopServer(registration_server_, absl::Seconds(1));
  StopServer(pod_resources_server_, absl::Seconds(1));
  std::vector<std::thread> watchers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, ep] : endpoints_) ep->watch_ctx.TryCancel();
    watchers.swap(watchers_);
  }
  for (std::thread& t : watchers) t.join();
  std::lock_guard<std::mutex> lock(mu_);
  endpoints_.clear();
  registrations_.clear();
  // Every socket in the directory goes, the plugins' included.
  RemoveSockets(plugin_dir_);
  unlink(pod_resources_socket_.c_str());
  changed_.notify_all();
}

absl::Status FakeKubelet::Restart() {
  Stop();
  return Start();
}

absl::Status FakeKubelet::Register(const v1beta1::RegisterRequest& req) {
  if (req.version() != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported device plugin version \"", req.version(),
                                                  "\"; supported: ", kVersion));
  }
  if (absl::Status s = CheckResourceName(req.resource_name()); !s.ok()) return s;
  if (req.endpoint().empty() || req.endpoint().find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid endpoint \"", req.endpoint(), "\""));
  }
  auto ep = std::make_shared<Endpoint>();
  ep->resource = req.resource_name();
  ep->socket = plugin_dir_ + "/" + req.endpoint();
  auto channel = grpc::CreateChannel("unix:" + ep->socket, grpc::InsecureChannelCredentials());
  // The kubelet dials (blocking, with a timeout) before it answers Register,
  // so a plugin that registers before serving fails here.
  if (!channel->WaitForConnected(In(absl::Seconds(5)))) {
    return absl::UnavailableError(absl::StrCat("cannot dial device plugin ", req.resource_name(), " at ",
                                               ep->socket));
  }
  ep->stub = v1beta1::DevicePlugin::NewStub(channel);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(5)));
    v1beta1::Empty empty;
    grpc::Status s = ep->stub->GetDevicePluginOptions(&ctx, empty, &ep->options);
    if (!s.ok()) return FromGrpc(s, "GetDevicePluginOptions of " + req.resource_name());
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (auto old = endpoints_.find(ep->resource); old != endpoints_.end()) old->second->watch_ctx.TryCancel();
  endpoints_[ep->resource] = ep;
  registrations_.push_back({ep->resource, req.endpoint(), ep->options, absl::Now()});
  watchers_.emplace_back([this, ep] { RunListAndWatch(ep); });
  changed_.notify_all();
  return absl::OkStatus();
}

void FakeKubelet::RunListAndWatch(std::shared_ptr<Endpoint> ep) {
  v1beta1::Empty empty;
  auto reader = ep->stub->ListAndWatch(&ep->watch_ctx, empty);
  v1beta1::ListAndWatchResponse resp;
  while (reader->Read(&resp)) {
    std::vector<AdvertisedDevice> devices;
    for (const v1beta1::Device& d : resp.devices()) {
      AdvertisedDevice a{d.id(), d.health(), {}};
      for (const v1beta1::NUMANode& n : d.topology().nodes()) a.numa_nodes.push_back(n.id());
      devices.push_back(std::move(a));
    }
    std::lock_guard<std::mutex> lock(mu_);
    ep->devices = std::move(devices);
    ++ep->updates;
    changed_.notify_all();
  }
  reader->Finish().IgnoreError();
  // As the kubelet does when a plugin's stream ends: its devices are unhealthy.
  std::lock_guard<std::mutex> lock(mu_);
  ep->connected = false;
  for (AdvertisedDevice& d : ep->devices) d.health = "Unhealthy";
  changed_.notify_all();
}

std::vector<Registration> FakeKubelet::registrations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return registrations_;
}

bool FakeKubelet::WaitForRegistration(const std::string& resource, int count, absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] {
    return std::count_if(registrations_.begin(), registrations_.end(),
                         [&](const Registration& r) { return r.resource_name == resource; }) >= count;
  });
}

std::vector<AdvertisedDevice> FakeKubelet::Devices(const std::string& resource) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = endpoints_.find(resource);
  return it == endpoints_.end() ? std::vector<AdvertisedDevice>{} : it->second->devices;
}

int FakeKubelet::ListAndWatchUpdates(const std::string& resource) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = endpoints_.find(resource);
  return it == endpoints_.end() ? 0 : it->second->updates;
}

bool FakeKubelet::WaitForDevices(const std::string& resource,
                                 const std::function<bool(const std::vector<AdvertisedDevice>&)>& pred,
                                 absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] {
    auto it = endpoints_.find(resource);
    return it != endpoints_.end() && it->second->updates > 0 && pred(it->second->devices);
  });
}

std::shared_ptr<FakeKubelet::Endpoint> FakeKubelet::EndpointFor(const std::string& resource) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = endpoints_.find(resource);
  if (it == endpoints_.end() || !it->second->connected) return nullptr;
  return it->second;
}

absl::StatusOr<v1beta1::PreferredAllocationResponse> FakeKubelet::GetPreferredAllocation(
    const std::string& resource, const v1beta1::PreferredAllocationRequest& req) {
  std::shared_ptr<Endpoint> ep = EndpointFor(resource);
  if (!ep) return absl::NotFoundError("no device plugin registered for " + resource);
  return UnaryCall(*ep->stub, &v1beta1::DevicePlugin::Stub::GetPreferredAllocation, req, absl::Seconds(10),
                   "GetPreferredAllocation of " + resource);
}

absl::StatusOr<v1beta1::AllocateResponse> FakeKubelet::Allocate(const std::string& resource,
                                                                const v1beta1::AllocateRequest& req) {
  std::shared_ptr<Endpoint> ep = EndpointFor(resource);
  if (!ep) return absl::NotFoundError("no device plugin registered for " + resource);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++allocate_calls_;
  }
  return UnaryCall(*ep->stub, &v1beta1::DevicePlugin::Stub::Allocate, req, absl::Seconds(30),
                   "Allocate of " + resource);
}

absl::Status FakeKubelet::PreStartContainer(const std::string& resource, const std::vector<std::string>& device_ids) {
  std::shared_ptr<Endpoint> ep = EndpointFor(resource);
  if (!ep) return absl::NotFoundError("no device plugin registered for " + resource);
  v1beta1::PreStartContainerRequest req;
  for (const std::string& id : device_ids) req.add_devices_ids(id);
  return UnaryCall(*ep->stub, &v1beta1::DevicePlugin::Stub::PreStartContainer, req, absl::Seconds(10),
                   "PreStartContainer of " + resource)
      .status();
}

absl::StatusOr<AdmittedContainer> FakeKubelet::AdmitPod(const std::string& pod_namespace,
                                                        const std::string& pod_name, const std::string& container,
                                                        const std::string& resource, int count) {
  std::shared_ptr<Endpoint> ep = EndpointFor(resource);
  if (!ep) return absl::NotFoundError("no device plugin registered for " + resource);
  std::vector<std::string> available;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string> used;
    for (const auto& [pod, containers] : pods_) {
      for (const AdmittedContainer& c : containers) {
        if (c.resource_name == resource) used.insert(c.device_ids.begin(), c.device_ids.end());
      }
    }
    for (const AdvertisedDevice& d : ep->devices) {
      if (d.health == "Healthy" && !used.count(d.id)) available.push_back(d.id);
    }
  }
  if (static_cast<int>(available.size()) < count) {
    return absl::ResourceExhaustedError(absl::StrCat("requested ", count, " of ", resource, ", ",
                                                     available.size(), " available"));
  }
  std::vector<std::string> chosen(available.begin(), available.begin() + count);
  if (ep->options.get_preferred_allocation_available()) {
    v1beta1::PreferredAllocationRequest req;
    v1beta1::ContainerPreferredAllocationRequest* c = req.add_container_requests();
    for (const std::string& id : available) c->add_available_deviceids(id);
    c->set_allocation_size(count);
    absl::StatusOr<v1beta1::PreferredAllocationResponse> pref = GetPreferredAllocation(resource, req);
    if (!pref.ok()) return pref.status();
    // The kubelet uses the preference when it is a valid choice.
    if (pref->container_responses_size() == 1 && pref->container_responses(0).deviceids_size() == count) {
      const auto& ids = pref->container_responses(0).deviceids();
      bool valid = std::all_of(ids.begin(), ids.end(), [&](const std::string& id) {
        return std::find(available.begin(), available.end(), id) != available.end();
      });
      if (valid) chosen.assign(ids.begin(), ids.end());
    }
  }
  return AdmitPodWithDevices(pod_namespace, pod_name, container, resource, chosen);
}

absl::StatusOr<AdmittedContainer> FakeKubelet::AdmitPodWithDevices(const std::string& pod_namespace,
                                                                   const std::string& pod_name,
                                                                   const std::string& container,
                                                                   const std::string& resource,
                                                                   const std::vector<std::string>& device_ids) {
  std::shared_ptr<Endpoint> ep = EndpointFor(resource);
  if (!ep) return absl::NotFoundError("no device plugin registered for " + resource);
  v1beta1::AllocateRequest req;
  v1beta1::ContainerAllocateRequest* c = req.add_container_requests();
  for (const std::string& id : device_ids) c->add_devices_ids(id);
  absl::StatusOr<v1beta1::AllocateResponse> resp = Allocate(resource, req);
  if (!resp.ok()) return resp.status();
  if (resp->container_responses_size() != 1) {
    return absl::InternalError(absl::StrCat("Allocate of ", resource, " answered ", resp->container_responses_size(),
                                           " container responses for 1 request"));
  }
  if (ep->options.pre_start_required()) {
    if (absl::Status s = PreStartContainer(resource, device_ids); !s.ok()) return s;
  }
  AdmittedContainer admitted{container, resource, device_ids, resp->container_responses(0), {}};
  absl::StatusOr<v1beta1::ContainerAllocateResponse> run = ApplyCdiDevices(admitted.response, cdi_dir_);
  if (!run.ok()) return run.status();
  admitted.container = *std::move(run);
  std::lock_guard<std::mutex> lock(mu_);
  pods_[pod_namespace + "/" + pod_name].push_back(admitted);
  return admitted;
}

void FakeKubelet::RemovePod(const std::string& pod_namespace, const std::string& pod_name) {
  std::lock_guard<std::mutex> lock(mu_);
  pods_.erase(pod_namespace + "/" + pod_name);
}

absl::StatusOr<AdmittedContainer> FakeKubelet::RestartContainer(const std::string& pod_namespace,
                                                                const std::string& pod_name,
                                                                const std::string& container) {
  std::optional<AdmittedContainer> found;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto pod = pods_.find(pod_namespace + "/" + pod_name);
    if (pod != pods_.end()) {
      for (const AdmittedContainer& c : pod->second) {
        if (c.name == container) found = c;
      }
    }
  }
  if (!found) return absl::NotFoundError(absl::StrCat("no container ", container, " in pod ", pod_namespace, "/", pod_name));
  std::shared_ptr<Endpoint> ep = EndpointFor(found->resource_name);
  if (!ep) return absl::NotFoundError("no device plugin registered for " + found->resource_name);
  if (ep->options.pre_start_required()) {
    if (absl::Status s = PreStartContainer(found->resource_name, found->device_ids); !s.ok()) return s;
  }
  absl::StatusOr<v1beta1::ContainerAllocateResponse> run = ApplyCdiDevices(found->response, cdi_dir_);
  if (!run.ok()) return run.status();
  found->container = *std::move(run);
  return *found;
}

int FakeKubelet::allocate_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return allocate_calls_;
}

v1::ListPodResourcesResponse FakeKubelet::ListPods() const {
  std::lock_guard<std::mutex> lock(mu_);
  ::v1::ListPodResourcesResponse resp;
  for (const auto& [key, containers] : pods_) {
    ::v1::PodResources* p = resp.add_pod_resources();
    const size_t slash = key.find('/');
    p->set_namespace_(key.substr(0, slash));
    p->set_name(key.substr(slash + 1));
    for (const AdmittedContainer& c : containers) {
      ::v1::ContainerResources* cr = p->add_containers();
      cr->set_name(c.name);
      ::v1::ContainerDevices* d = cr->add_devices();
      d->set_resource_name(c.resource_name);
      for (const std::string& id : c.device_ids) d->add_device_ids(id);
    }
  }
  return resp;
}

}  // namespace rpci::testing
