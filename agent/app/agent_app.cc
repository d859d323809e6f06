#include "agent/app/agent_app.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "agent/inventory/pci_inventory.h"
#include "agent/inventory/rdma_inventory.h"
#include "common/fabric/fabric.h"
#include "common/tls.h"
#include "common/tls_settings.h"

namespace rpci::agent {

namespace {

bool IsWildcardHost(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]";
}

std::string JoinHostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos && host.front() != '[') return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

}  // namespace

rpci::v1::PcieFunction EmuFunction(int index, const std::vector<SessionDevice::Bar>& bars) {
  PciAddress addr;
  addr.domain = kEmuDomain;
  addr.bus = static_cast<uint32_t>(index / 32);
  addr.device = static_cast<uint32_t>(index % 32);
  addr.function = 0;
  rpci::v1::PcieFunction fn;
  fn.set_bdf(addr.ToString());
  fn.set_vendor_id(kEmuVendorId);
  fn.set_device_id(kEmuDeviceId);
  fn.set_subsystem_vendor_id(kEmuVendorId);
  fn.set_subsystem_device_id(kEmuDeviceId);
  fn.set_class_code(kEmuClassCode);
  fn.set_revision(1);
  fn.set_vendor_name("rpci");
  fn.set_device_name("rpci-emu emulated device");
  fn.set_class_name("Processing accelerators");
  fn.set_numa_node(-1);
  fn.set_iommu_group(-1);
  fn.set_driver("rpci-emu");
  for (const SessionDevice::Bar& b : bars) {
    rpci::v1::Bar* bar = fn.add_bars();
    bar->set_index(b.index);
    bar->set_size(b.size);
    bar->set_is_64bit(true);
  }
  return fn;
}

AgentApp::AgentApp(AgentOptions options) : options_(std::move(options)), log_(Logger("agent").With("node", options_.node)) {}

AgentApp::~AgentApp() { Stop(); }

namespace {

// IP SANs a node certificate asks for: the addresses plugins and workloads
// dial (session.advertise, fabric.address) when they are IPs.
std::vector<std::string> NodeCertificateIps(const AgentOptions& o) {
  std::vector<std::string> ips;
  std::string host;
  int port = 0;
  for (const std::string& h : {ParseHostPort(o.session_advertise, &host, &port).ok() ? host : "", o.fabric.node}) {
    in6_addr addr;
    if (!h.empty() && (inet_pton(AF_INET, h.c_str(), &addr) == 1 || inet_pton(AF_INET6, h.c_str(), &addr) == 1) &&
        std::find(ips.begin(), ips.end(), h) == ips.end()) {
      ips.push_back(h);
    }
  }
  return ips;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AgentApp>> AgentApp::Create(AgentOptions options, DeviceBackends backends) {
  if (absl::Status s = ValidateAgentOptions(options); !s.ok()) return s;
  std::unique_ptr<AgentApp> app(new AgentApp(std::move(options)));
  const AgentOptions& o = app->options_;
  absl::StatusOr<std::string> provider = fabric::ResolveProvider(o.fabric.provider, fabric::RdmaProbe::Default());
  if (!provider.ok()) return absl::InvalidArgumentError(absl::StrCat("fabric.provider: ", provider.status().message()));
  app->provider_ = *provider;

  if (absl::Status s = app->AddEmuDevices(backends); !s.ok()) return s;
  if (absl::Status s = app->AddRealDevices(backends); !s.ok()) return s;
  if (app->devices_.empty()) {
    return absl::FailedPreconditionError("rpci-agent serve: no device could be exported (see the log)");
  }

  std::map<std::string, SessionDevice*> by_id;
  for (size_t i = 0; i < app->devices_.size(); ++i) by_id[app->devices_[i].id()] = app->backends_[i].get();
  SessionServerOptions so;
  so.fabric = o.fabric;
  so.fabric.provider = app->provider_;
  if (so.fabric.node.empty()) so.fabric.node = fabric::LoopbackConfig().node;
  so.state_dir = o.state_dir;
  so.grace = o.session_grace;
  so.attach_timeout = o.attach_timeout;
  so.throttle = o.session_throttle;
  so.metrics = &app->metrics_;
  // With TLS, workloads attach holding only the CA and their session key;
  // reservations must come from the plugin of the compute node (Start).
  so.require_plugin_certificate = !o.tls.insecure;
  if (!o.state_dir.empty() && access(o.state_dir.c_str(), W_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("session.state_dir: \"", o.state_dir, "\" is not a writable directory"));
  }
  absl::StatusOr<std::unique_ptr<SessionServer>> server = SessionServer::Create(so, &app->grants_, by_id);
  if (!server.ok()) {
    return absl::Status(server.status().code(), absl::StrCat("session server: ", server.status().message()));
  }
  app->session_server_ = *std::move(server);

  GaugeFamily& exported = app->metrics_.AddGauge("rpci_agent_exported_devices", "Devices this agent exports",
                                                 {"pool", "backend"});
  for (const rpci::v1::ExportedDevice& d : app->devices_) exported.Labels({d.pool(), d.backend()}).Increment();
  app->log_.Info("devices ready", {{"devices", app->devices_.size()}, {"provider", app->provider_}});
  return app;
}

absl::Status AgentApp::AddEmuDevices(const DeviceBackends& backends) {
  int index = 0;
  for (const EmuDevicesConfig& e : options_.emu) {
    for (int64_t n = 0; n < e.count; ++n, ++index) {
      if (!backends.emu) return absl::UnimplementedError("emu: this build has no emu device backend");
      absl::StatusOr<std::unique_ptr<SessionDevice>> dev = backends.emu(e, index);
      if (!dev.ok()) {
        return absl::Status(dev.status().code(), absl::StrCat("emu device ", index, ": ", dev.status().message()));
      }
      rpci::v1::ExportedDevice d;
      *d.mutable_function() = EmuFunction(index, (*dev)->Bars());
      absl::StatusOr<PciAddress> addr = PciAddress::Parse(d.function().bdf());
      if (!addr.ok()) return addr.status();
      absl::StatusOr<std::string> id = DeviceId(options_.node, *addr);
      if (!id.ok()) return id.status();
      d.set_id(*id);
      d.set_node(options_.node);
      d.set_pool(e.pool);
      d.set_backend("emu");
      Export(std::move(d), *std::move(dev));
    }
  }
  return absl::OkStatus();
}

absl::Status AgentApp::AddRealDevices(const DeviceBackends& backends) {
  if (options_.export_policy.rules().empty()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<PciNames>> names = PciNames::Open();
  if (!names.ok()) log_.Warn("pci names unavailable", {{"error", names.status().ToString()}});
  absl::StatusOr<std::vector<rpci::v1::PcieFunction>> functions =
      ScanPciFunctions(options_.sysfs_root, names.ok() ? names->get() : nullptr);
  if (!functions.ok()) {
    return absl::Status(functions.status().code(),
                        absl::StrCat("inventory.sysfs_root: ", functions.status().message()));
  }
  RdmaInventory rdma(options_.sysfs_root, DefaultRdmaSource(options_.sysfs_root), log_);
  absl::StatusOr<std::vector<rpci::v1::RdmaNic>> nics = rdma.Scan();
  if (!nics.ok()) {
    log_.Warn("rdma inventory failed; no locality", {{"error", nics.status().ToString()}});
    nics = std::vector<rpci::v1::RdmaNic>();
  }
  absl::StatusOr<std::vector<rpci::v1::ExportedDevice>> selected =
      options_.export_policy.Select(options_.node, *functions, *nics);
  if (!selected.ok()) return selected.status();
  for (rpci::v1::ExportedDevice& d : *selected) {
    if (!options_.vfio) {
      log_.Warn("device selected but not exported: vfio is off (inventory.vfio / --vfio)",
                {{"device", d.id()}, {"bdf", d.function().bdf()}});
      continue;
    }
    if (!backends.vfio) {
      log_.Warn("device not exported: this build has no vfio backend", {{"device", d.id()}});
      continue;
    }
    absl::StatusOr<std::unique_ptr<SessionDevice>> dev = backends.vfio(options_, d.function());
    if (!dev.ok()) {
      log_.Warn("device not exported", {{"device", d.id()}, {"error", dev.status().ToString()}});
      continue;
    }
    Export(std::move(d), *std::move(dev));
  }
  return absl::OkStatus();
}

void AgentApp::Export(rpci::v1::ExportedDevice d, std::unique_ptr<SessionDevice> dev) {
  d.set_dma_size(dev->dma_size());
  d.set_health(rpci::v1::DEVICE_HEALTH_HEALTHY);
  for (const auto& [k, v] : options_.labels) (*d.mutable_labels())[k] = v;
  devices_.push_back(std::move(d));
  backends_.push_back(std::move(dev));
}

std::vector<rpci::v1::DeviceHealthReport> AgentApp::Health() const {
  std::vector<rpci::v1::DeviceHealthReport> out;
  for (const rpci::v1::ExportedDevice& d : devices_) {
    rpci::v1::DeviceHealthReport r;
    r.set_device_id(d.id());
    // Unhealthy while the agent does not serve, the backend reports a fault
    // (device gone, reset failed) or the last teardown could not scrub it.
    absl::Status health = serving_ ? backends_[out.size()]->Health()
                                   : absl::UnavailableError("agent not serving sessions");
    if (health.ok() && session_server_ != nullptr) {
      absl::Status clean = session_server_->DeviceClean(d.id());
      if (!clean.ok() && !absl::IsUnavailable(clean)) health = clean;  // being scrubbed right now is no fault
      r.set_scrubbing(absl::IsUnavailable(clean));
    }
    r.set_health(health.ok() ? rpci::v1::DEVICE_HEALTH_HEALTHY : rpci::v1::DEVICE_HEALTH_UNHEALTHY);
    if (!health.ok()) r.set_reason(std::string(health.message()));
    out.push_back(std::move(r));
  }
  return out;
}

absl::Status AgentApp::Start() {
  absl::StatusOr<std::unique_ptr<DaemonTls>> tls =
      DaemonTls::Start(options_.tls, {"agent", options_.node, NodeCertificateIps(options_)}, log_);
  if (!tls.ok()) return tls.status();
  tls_ = *std::move(tls);
  // SessionControl: plugins present their certificate, workloads none.
  std::shared_ptr<grpc::ServerCredentials> server_creds =
      tls_->ServerCredentials(ClientCertPolicy::kRequestAndVerifyIfPresent);
  std::shared_ptr<grpc::ChannelCredentials> channel_creds = tls_->ChannelCredentials();

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.session_listen, server_creds, &session_port_);
  builder.RegisterService(session_server_.get());
  grpc_server_ = builder.BuildAndStart();
  if (!grpc_server_ || session_port_ == 0) {
    grpc_server_.reset();
    return absl::UnavailableError(absl::StrCat("session.listen: cannot listen on ", options_.session_listen));
  }
  std::string host;
  int port = 0;
  (void)ParseHostPort(options_.session_listen, &host, &port);
  if (!options_.session_advertise.empty()) {
    session_endpoint_ = options_.session_advertise;
  } else if (!IsWildcardHost(host)) {
    session_endpoint_ = JoinHostPort(host, session_port_);
  } else if (!options_.fabric.node.empty()) {
    session_endpoint_ = JoinHostPort(options_.fabric.node, session_port_);
  } else {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    session_endpoint_ = JoinHostPort(name, session_port_);
  }
  serving_ = true;

  if (!options_.http_listen.empty()) {
    health_ = std::make_unique<HealthServer>(&metrics_, [this] { return Readiness(); });
    absl::StatusOr<int> bound = health_->Start(options_.http_listen);
    if (!bound.ok()) return absl::Status(bound.status().code(), absl::StrCat("http.listen: ", bound.status().message()));
    http_port_ = *bound;
  }

  ControllerLinkOptions lo;
  lo.node = options_.node;
  lo.session_endpoint = session_endpoint_;
  lo.fabric_provider = provider_;
  lo.retry.initial_backoff = absl::Milliseconds(100);
  lo.retry.max_backoff = absl::Seconds(5);
  link_ = std::make_unique<ControllerLink>(
      grpc::CreateChannel(options_.controller, channel_creds), lo, &grants_, [this] { return devices_; },
      [this] { return Health(); },
      [this] {
        return session_server_ ? session_server_->Reports() : std::vector<rpci::v1::SessionReport>{};
      });
  link_->Start();
  log_.Info("serving", {{"session_endpoint", session_endpoint_},
                        {"http_port", http_port_},
                        {"controller", options_.controller},
                        {"provider", provider_}});
  return absl::OkStatus();
}

absl::StatusOr<std::string> AgentApp::Readiness() const {
  if (!serving_) return absl::UnavailableError("not serving sessions");
  if (!link_ || !link_->registered()) {
    return absl::UnavailableError(absl::StrCat("not registered with controller ", options_.controller));
  }
  return absl::StrCat("registered as ", options_.node, "; ", devices_.size(), " devices, ",
                      session_server_->live_sessions(), " sessions");
}

void AgentApp::Stop() {
  if (stopped_) return;
  stopped_ = true;
  serving_ = false;
  if (link_) link_->Stop();
  if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (session_server_) session_server_->Stop();
  if (health_) health_->Stop();
  log_.Info("stopped; live sessions stay in the checkpoint", {{"state_dir", options_.state_dir}});
}

}  // namespace rpci::agent
