#include "plugin/dra_endpoint.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/unix_grpc.h"
#include "grpcpp/grpcpp.h"
#include "third_party/kubelet/dra/v1/api.grpc.pb.h"
#include "third_party/kubelet/dra/v1beta1/api.grpc.pb.h"
#include "third_party/kubelet/pluginregistration/v1/api.grpc.pb.h"

namespace rpci::plugin {
namespace {

namespace drabeta = ::k8s::io::kubelet::pkg::apis::dra::v1beta1;

// How long a stopping server lets calls in flight finish.
constexpr absl::Duration kShutdownGrace = absl::Milliseconds(200);

// One handler behind both versions' services: v1beta1's is declared with the
// v1 messages (third_party/kubelet/dra/v1beta1/api.proto), so only the method paths
// differ.
template <typename Service>
class DraService final : public Service {
 public:
  explicit DraService(DraHandler* h) : h_(h) {}
  grpc::Status NodePrepareResources(grpc::ServerContext*, const drapb::NodePrepareResourcesRequest* req,
                                    drapb::NodePrepareResourcesResponse* resp) override {
    *resp = h_->Prepare(*req);
    return grpc::Status::OK;
  }
  grpc::Status NodeUnprepareResources(grpc::ServerContext*, const drapb::NodeUnprepareResourcesRequest* req,
                                      drapb::NodeUnprepareResourcesResponse* resp) override {
    *resp = h_->Unprepare(*req);
    return grpc::Status::OK;
  }

 private:
  DraHandler* const h_;
};
using DraV1Service = DraService<drapb::DRAPlugin::Service>;
using DraV1beta1Service = DraService<drabeta::DRAPlugin::Service>;

class RegistrationService final : public pluginregistration::Registration::Service {
 public:
  using NotifyFn = std::function<void(bool, const std::string&)>;
  RegistrationService(pluginregistration::PluginInfo info, NotifyFn notify)
      : info_(std::move(info)), notify_(std::move(notify)) {}
  grpc::Status GetInfo(grpc::ServerContext*, const pluginregistration::InfoRequest*,
                       pluginregistration::PluginInfo* resp) override {
    *resp = info_;
    return grpc::Status::OK;
  }
  grpc::Status NotifyRegistrationStatus(grpc::ServerContext*, const pluginregistration::RegistrationStatus* st,
                                        pluginregistration::RegistrationStatusResponse*) override {
    notify_(st->plugin_registered(), st->error());
    return grpc::Status::OK;
  }

 private:
  const pluginregistration::PluginInfo info_;
  const NotifyFn notify_;
};

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0750) != 0 && errno != EEXIST) {
    return absl::UnavailableError(absl::StrCat("create ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

std::string DraRegistrationSocket(const std::string& kubelet_dir, const std::string& driver) {
  return absl::StrCat(kubelet_dir, "/plugins_registry/", driver, "-reg.sock");
}

std::string DraPluginSocket(const std::string& kubelet_dir, const std::string& driver) {
  return absl::StrCat(kubelet_dir, "/plugins/", driver, "/dra.sock");
}

// The services and their servers; services outlive their servers.
class DraEndpoint::Servers {
 public:
  Servers(DraHandler* h, pluginregistration::PluginInfo info, RegistrationService::NotifyFn notify)
      : v1_(h), v1beta1_(h), registration_(std::move(info), std::move(notify)) {}
  ~Servers() {
    StopServer(registration_server_, kShutdownGrace);
    StopServer(dra_server_, kShutdownGrace);
  }
  DraV1Service v1_;
  DraV1beta1Service v1beta1_;
  RegistrationService registration_;
  std::unique_ptr<grpc::Server> dra_server_, registration_server_;
};

DraEndpoint::DraEndpoint(std::string kubelet_dir, std::string driver, DraHandler* handler, Counter* registrations)
    : kubelet_dir_(std::move(kubelet_dir)),
      driver_(std::move(driver)),
      handler_(handler),
      registrations_counter_(registrations) {}

DraEndpoint::~DraEndpoint() { Stop(); }

absl::Status DraEndpoint::Start() {
  const std::string dra_socket = DraPluginSocket(kubelet_dir_, driver_);
  const std::string reg_socket = DraRegistrationSocket(kubelet_dir_, driver_);
  for (const std::string& s : {dra_socket, reg_socket}) {
    if (s.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return absl::InvalidArgumentError("plugin: DRA socket path too long for unix sockets: " + s);
    }
  }
  for (const std::string& d : {kubelet_dir_, kubelet_dir_ + "/plugins", kubelet_dir_ + "/plugins/" + driver_,
                               kubelet_dir_ + "/plugins_registry"}) {
    if (absl::Status s = MakeDir(d); !s.ok()) return s;
  }
  pluginregistration::PluginInfo info;
  info.set_type(kDraPluginType);
  info.set_name(driver_);
  info.set_endpoint(dra_socket);
  info.add_supported_versions(kDraServiceV1);
  info.add_supported_versions(kDraServiceV1beta1);
  {
    std::lock_guard<std::mutex> lock(retry_mu_);
    stopping_ = false;
    retry_ = false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  servers_ = std::make_unique<Servers>(handler_, std::move(info), [this](bool ok, const std::string& error) {
    OnRegistrationStatus(ok, error);
  });
  // The DRA service first: the kubelet may call it as soon as it registers.
  servers_->dra_server_ = ServeUnix(dra_socket, {&servers_->v1_, &servers_->v1beta1_});
  if (servers_->dra_server_ == nullptr) {
    servers_.reset();
    return absl::UnavailableError("plugin: cannot serve DRA on " + dra_socket);
  }
  servers_->registration_server_ = ServeUnix(reg_socket, {&servers_->registration_});
  if (servers_->registration_server_ == nullptr) {
    servers_.reset();
    return absl::UnavailableError("plugin: cannot serve plugin registration on " + reg_socket);
  }
  retry_thread_ = std::thread([this] { RetryLoop(); });
  log_.Info("serving DRA", {{"driver", driver_}, {"endpoint", dra_socket}, {"registration", reg_socket}});
  return absl::OkStatus();
}

void DraEndpoint::Stop() {
  {
    std::lock_guard<std::mutex> lock(retry_mu_);
    stopping_ = true;
  }
  retry_cv_.notify_all();
  if (retry_thread_.joinable()) retry_thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  if (servers_ == nullptr) return;
  servers_.reset();
  unlink(DraRegistrationSocket(kubelet_dir_, driver_).c_str());
  unlink(DraPluginSocket(kubelet_dir_, driver_).c_str());
}

void DraEndpoint::OnRegistrationStatus(bool registered, const std::string& error) {
  if (registered) {
    ++registrations_;
    if (registrations_counter_ != nullptr) registrations_counter_->Increment();
    log_.Info("registered with kubelet", {{"driver", driver_}});
    return;
  }
  ++failures_;
  log_.Warn("kubelet refused the registration; registering again in 1s", {{"driver", driver_}, {"error", error}});
  {
    std::lock_guard<std::mutex> lock(retry_mu_);
    retry_ = true;
  }
  retry_cv_.notify_all();
}

void DraEndpoint::RetryLoop() {
  std::unique_lock<std::mutex> lock(retry_mu_);
  while (!stopping_) {
    retry_cv_.wait(lock, [&] { return retry_ || stopping_; });
    if (stopping_) break;
    // A second's pause so a refusing kubelet is not hammered.
    if (retry_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; })) break;
    retry_ = false;
    lock.unlock();
    // Not from the gRPC thread that delivered the notification: a server
    // cannot be shut down from inside one of its own calls.
    const bool served = ServeRegistration().ok();
    lock.lock();
    if (!served) retry_ = true;
  }
}

absl::Status DraEndpoint::ServeRegistration() {
  const std::string reg_socket = DraRegistrationSocket(kubelet_dir_, driver_);
  std::lock_guard<std::mutex> lock(mu_);
  if (servers_ == nullptr) return absl::OkStatus();
  StopServer(servers_->registration_server_, kShutdownGrace);
  servers_->registration_server_ = ServeUnix(reg_socket, {&servers_->registration_});
  if (servers_->registration_server_ == nullptr) {
    log_.Error("cannot serve plugin registration again", {{"socket", reg_socket}});
    return absl::UnavailableError("plugin: cannot serve plugin registration on " + reg_socket);
  }
  log_.Info("serving plugin registration again", {{"socket", reg_socket}});
  return absl::OkStatus();
}

}  // namespace rpci::plugin
