#include "tests/kubelet/fake_dra_kubelet.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_util.h"
#include "grpcpp/grpcpp.h"
#include "tests/kubelet/cdi_runtime.h"
#include "third_party/kubelet/dra/v1/api.grpc.pb.h"
#include "third_party/kubelet/dra/v1beta1/api.grpc.pb.h"
#include "third_party/kubelet/pluginregistration/v1/api.grpc.pb.h"

namespace rpci::testing {
namespace {

namespace drabeta = ::k8s::io::kubelet::pkg::apis::dra::v1beta1;

// pkg/kubelet/cm/dra/plugin: every call on a DRA plugin has this long.
constexpr absl::Duration kCallTimeout = absl::Seconds(45);
// pkg/kubelet/pluginmanager: the reconciler's period.
constexpr absl::Duration kReconcilePeriod = absl::Seconds(1);

bool IsSocket(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

template <typename Request>
Request ClaimsRequest(const std::vector<ClaimRef>& claims) {
  Request req;
  for (const ClaimRef& c : claims) {
    auto* out = req.add_claims();
    out->set_namespace_(c.ns);
    out->set_name(c.name);
    out->set_uid(c.uid);
  }
  return req;
}

std::shared_ptr<grpc::Channel> Dial(const std::string& socket) {
  return grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
}

}  // namespace

struct FakeDraKubelet::Driver {
  std::string name;
  std::string registration_socket;
  std::string endpoint;
  std::string service;
  std::shared_ptr<grpc::Channel> channel;
};

FakeDraKubelet::FakeDraKubelet(std::string kubelet_dir, std::string cdi_dir, std::vector<std::string> services)
    : kubelet_dir_(std::move(kubelet_dir)), cdi_dir_(std::move(cdi_dir)), services_(std::move(services)) {}

FakeDraKubelet::~FakeDraKubelet() { Stop(); }

absl::Status FakeDraKubelet::Start() {
  for (const std::string& d : {kubelet_dir_, kubelet_dir_ + "/plugins", registry_dir()}) mkdir(d.c_str(), 0750);
  {
    std::lock_guard<std::mutex> lock(mu_);
    registrations_.clear();
    drivers_.clear();
  }
  stopping_ = false;
  auto dir_watch = DirWatch::Open(registry_dir(), /*removals=*/true);
  if (!dir_watch.ok()) return dir_watch.status();
  // Sockets already there: the plugin watcher's initial walk.
  std::vector<std::string> existing;
  if (DIR* d = opendir(registry_dir().c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.' && IsSocket(registry_dir() + "/" + e->d_name)) existing.push_back(e->d_name);
    }
    closedir(d);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    desired_.clear();
    registered_.clear();
    for (const std::string& name : existing) desired_[registry_dir() + "/" + name] = ++stamp_;
  }
  watch_ = std::thread([this, w = *std::move(dir_watch)]() mutable { WatchLoop(std::move(w)); });
  return absl::OkStatus();
}

void FakeDraKubelet::Stop() {
  stopping_ = true;
  if (watch_.joinable()) watch_.join();
  std::lock_guard<std::mutex> lock(mu_);
  drivers_.clear();
}

absl::Status FakeDraKubelet::Restart() {
  Stop();
  return Start();
}

void FakeDraKubelet::WatchLoop(std::unique_ptr<DirWatch> dir_watch) {
  absl::Time last_reconcile = absl::InfinitePast();
  while (!stopping_) {
    for (const DirEvent& e : dir_watch->Wait(absl::Milliseconds(100))) {
      if (e.name[0] == '.') continue;
      const std::string path = registry_dir() + "/" + e.name;
      std::lock_guard<std::mutex> lock(mu_);
      if (e.removed) {
        desired_.erase(path);
        registered_.erase(path);
        for (auto it = drivers_.begin(); it != drivers_.end();) {
          it = it->second->registration_socket == path ? drivers_.erase(it) : std::next(it);
        }
        changed_.notify_all();
      } else {
        desired_[path] = ++stamp_;  // a new socket: registered anew
      }
    }
    if (absl::Now() - last_reconcile < kReconcilePeriod) continue;
    last_reconcile = absl::Now();
    // The reconciler: every desired socket not registered at its current
    // stamp is (re)tried, refused ones included.
    std::vector<std::pair<std::string, int64_t>> todo;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [path, stamp] : desired_) {
        if (registered_.count(path) == 0 || registered_.at(path) != stamp) todo.emplace_back(path, stamp);
      }
    }
    for (const auto& [path, stamp] : todo) {
      if (RegisterSocket(path)) {
        std::lock_guard<std::mutex> lock(mu_);
        registered_[path] = stamp;
      }
    }
  }
}

bool FakeDraKubelet::RegisterSocket(const std::string& socket) {
  auto reg = Dial(socket);
  auto stub = pluginregistration::Registration::NewStub(reg);
  DraRegistration r;
  r.socket = socket;
  pluginregistration::PluginInfo info;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(1)));
    ctx.set_wait_for_ready(true);  // the socket exists before its listener
    grpc::Status s = stub->GetInfo(&ctx, pluginregistration::InfoRequest(), &info);
    if (!s.ok()) {
      // The watcher gives up on this event; a new socket event retries.
      r.error = "GetInfo: " + s.error_message();
      std::lock_guard<std::mutex> lock(mu_);
      registrations_.push_back(r);
      changed_.notify_all();
      return false;
    }
  }
  r.type = info.type();
  r.driver = info.name();
  r.endpoint = info.endpoint().empty() ? socket : info.endpoint();
  r.supported_versions.assign(info.supported_versions().begin(), info.supported_versions().end());
  if (r.type != "DRAPlugin") {
    r.error = "no handler registered for plugin type: " + r.type;
  } else if (r.driver.empty()) {
    r.error = "DRA plugin has no name";
  } else {
    for (const std::string& s : services_) {
      if (std::find(r.supported_versions.begin(), r.supported_versions.end(), s) != r.supported_versions.end()) {
        r.chosen_service = s;
        break;
      }
    }
    if (r.chosen_service.empty()) {
      r.error = absl::StrCat("none of the supported versions [", absl::StrJoin(r.supported_versions, ", "),
                             "] is served by this kubelet [", absl::StrJoin(services_, ", "), "]");
    }
  }
  pluginregistration::RegistrationStatus st;
  st.set_plugin_registered(r.error.empty());
  st.set_error(r.error);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(1)));
  pluginregistration::RegistrationStatusResponse ignored;
  stub->NotifyRegistrationStatus(&ctx, st, &ignored);
  std::lock_guard<std::mutex> lock(mu_);
  if (r.error.empty()) {
    drivers_[r.driver] = std::make_shared<Driver>(Driver{r.driver, socket, r.endpoint, r.chosen_service, Dial(r.endpoint)});
  }
  registrations_.push_back(r);
  changed_.notify_all();
  return r.error.empty();
}

std::vector<DraRegistration> FakeDraKubelet::registrations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return registrations_;
}

bool FakeDraKubelet::WaitForDriver(const std::string& driver, int count, absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] {
    int n = 0;
    for (const DraRegistration& r : registrations_) n += r.driver == driver && r.error.empty();
    return n >= count && drivers_.count(driver) > 0;
  });
}

std::string FakeDraKubelet::ChosenService(const std::string& driver) const {
  std::shared_ptr<Driver> d = DriverNamed(driver);
  return d ? d->service : "";
}

std::shared_ptr<FakeDraKubelet::Driver> FakeDraKubelet::DriverNamed(const std::string& driver) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = drivers_.find(driver);
  return it == drivers_.end() ? nullptr : it->second;
}

template <typename Request, typename Response, typename V1Stub, typename BetaStub>
absl::StatusOr<Response> FakeDraKubelet::Call(
    const std::string& driver, const Request& req,
    grpc::Status (V1Stub::*v1)(grpc::ClientContext*, const Request&, Response*),
    grpc::Status (BetaStub::*beta)(grpc::ClientContext*, const Request&, Response*), const std::string& what) const {
  std::shared_ptr<Driver> d = DriverNamed(driver);
  if (d == nullptr) return absl::FailedPreconditionError("DRA driver " + driver + " is not registered");
  if (d->service == "v1beta1.DRAPlugin") {
    return UnaryCall(*drabeta::DRAPlugin::NewStub(d->channel), beta, req, kCallTimeout, what);
  }
  return UnaryCall(*drapb::DRAPlugin::NewStub(d->channel), v1, req, kCallTimeout, what);
}

absl::StatusOr<drapb::NodePrepareResourcesResponse> FakeDraKubelet::NodePrepareResources(
    const std::string& driver, const std::vector<ClaimRef>& claims) {
  return Call(driver, ClaimsRequest<drapb::NodePrepareResourcesRequest>(claims),
              &drapb::DRAPlugin::Stub::NodePrepareResources, &drabeta::DRAPlugin::Stub::NodePrepareResources,
              "NodePrepareResources");
}

absl::StatusOr<drapb::NodeUnprepareResourcesResponse> FakeDraKubelet::NodeUnprepareResources(
    const std::string& driver, const std::vector<ClaimRef>& claims) {
  return Call(driver, ClaimsRequest<drapb::NodeUnprepareResourcesRequest>(claims),
              &drapb::DRAPlugin::Stub::NodeUnprepareResources, &drabeta::DRAPlugin::Stub::NodeUnprepareResources,
              "NodeUnprepareResources");
}

absl::StatusOr<std::vector<std::string>> FakeDraKubelet::PrepareClaim(const std::string& driver,
                                                                      const ClaimRef& claim) {
  absl::StatusOr<drapb::NodePrepareResourcesResponse> resp = NodePrepareResources(driver, {claim});
  if (!resp.ok()) return resp.status();
  auto it = resp->claims().find(claim.uid);
  if (it == resp->claims().end()) {
    return absl::InternalError("NodePrepareResources left out claim " + claim.uid);
  }
  if (!it->second.error().empty()) return absl::FailedPreconditionError(it->second.error());
  std::vector<std::string> ids;
  for (const drapb::Device& d : it->second.devices()) ids.insert(ids.end(), d.cdi_device_ids().begin(), d.cdi_device_ids().end());
  return ids;
}

absl::Status FakeDraKubelet::UnprepareClaim(const std::string& driver, const ClaimRef& claim) {
  absl::StatusOr<drapb::NodeUnprepareResourcesResponse> resp = NodeUnprepareResources(driver, {claim});
  if (!resp.ok()) return resp.status();
  auto it = resp->claims().find(claim.uid);
  if (it == resp->claims().end()) return absl::InternalError("NodeUnprepareResources left out claim " + claim.uid);
  if (!it->second.error().empty()) return absl::FailedPreconditionError(it->second.error());
  return absl::OkStatus();
}

absl::StatusOr<v1beta1::ContainerAllocateResponse> FakeDraKubelet::ContainerEdits(
    const std::vector<std::string>& cdi_ids) const {
  return InjectCdiDevices(cdi_dir_, cdi_ids);
}

}  // namespace rpci::testing
