// Wire compatibility of our kubelet protos with the kubelet's: exact bytes for
// known messages (the field numbers decide them) and the exact gRPC paths the
// kubelet dials, checked against live servers built from our generated code.
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>

#include "common/testing/temp_dir.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "third_party/kubelet/deviceplugin/v1beta1/api.grpc.pb.h"
#include "third_party/kubelet/dra/v1/api.grpc.pb.h"
#include "third_party/kubelet/dra/v1beta1/api.grpc.pb.h"
#include "third_party/kubelet/pluginregistration/v1/api.grpc.pb.h"
#include "third_party/kubelet/podresources/v1/api.grpc.pb.h"

namespace rpci {
namespace {

std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

TEST(WireCompatTest, RegisterRequestBytesFollowFieldNumbers) {
  v1beta1::RegisterRequest req;
  req.set_version("v1beta1");
  req.set_endpoint("rpci-emu.sock");
  req.set_resource_name("rpci.io/emu");
  req.mutable_options()->set_get_preferred_allocation_available(true);
  std::string want = Bytes({0x0a, 7}) + "v1beta1" + Bytes({0x12, 13}) + "rpci-emu.sock" +
                     Bytes({0x1a, 11}) + "rpci.io/emu" + Bytes({0x22, 2, 0x10, 1});
  EXPECT_EQ(req.SerializeAsString(), want);
}

TEST(WireCompatTest, DevicePluginOptionsPreStartIsFieldOne) {
  v1beta1::DevicePluginOptions o;
  o.set_pre_start_required(true);
  o.set_get_preferred_allocation_available(true);
  EXPECT_EQ(o.SerializeAsString(), Bytes({0x08, 1, 0x10, 1}));
}

TEST(WireCompatTest, ListAndWatchResponseDeviceWithTopology) {
  v1beta1::ListAndWatchResponse resp;
  v1beta1::Device* d = resp.add_devices();
  d->set_id("dev0");
  d->set_health("Healthy");
  d->mutable_topology()->add_nodes()->set_id(1);
  // Device: ID(1) "dev0", health(2) "Healthy", topology(3){nodes(1){ID(1)=1}}
  std::string device = Bytes({0x0a, 4}) + "dev0" + Bytes({0x12, 7}) + "Healthy" +
                       Bytes({0x1a, 4, 0x0a, 2, 0x08, 1});
  EXPECT_EQ(resp.SerializeAsString(), Bytes({0x0a, static_cast<int>(device.size())}) + device);
}

TEST(WireCompatTest, ContainerAllocateResponseFieldsAndMapEntries) {
  v1beta1::ContainerAllocateResponse r;
  (*r.mutable_envs())["K"] = "V";
  v1beta1::Mount* m = r.add_mounts();
  m->set_container_path("/c");
  m->set_host_path("/h");
  m->set_read_only(true);
  v1beta1::DeviceSpec* d = r.add_devices();
  d->set_container_path("/dc");
  d->set_host_path("/dh");
  d->set_permissions("rw");
  (*r.mutable_annotations())["A"] = "B";
  r.add_cdi_devices()->set_name("rpci.io/emu=d");
  std::string env_entry = Bytes({0x0a, 1, 'K', 0x12, 1, 'V'});
  std::string mount = Bytes({0x0a, 2}) + "/c" + Bytes({0x12, 2}) + "/h" + Bytes({0x18, 1});
  std::string device = Bytes({0x0a, 3}) + "/dc" + Bytes({0x12, 3}) + "/dh" + Bytes({0x1a, 2}) + "rw";
  std::string annotation_entry = Bytes({0x0a, 1, 'A', 0x12, 1, 'B'});
  std::string cdi = Bytes({0x0a, 13}) + "rpci.io/emu=d";
  // envs = 1, mounts = 2, devices = 3, annotations = 4, cdi_devices = 5
  // (upstream k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto).
  std::string want = Bytes({0x0a, static_cast<int>(env_entry.size())}) + env_entry +
                     Bytes({0x12, static_cast<int>(mount.size())}) + mount +
                     Bytes({0x1a, static_cast<int>(device.size())}) + device +
                     Bytes({0x22, static_cast<int>(annotation_entry.size())}) + annotation_entry +
                     Bytes({0x2a, static_cast<int>(cdi.size())}) + cdi;
  EXPECT_EQ(r.SerializeAsString(), want);
}

TEST(WireCompatTest, PreferredAllocationRequestFieldNumbers) {
  v1beta1::ContainerPreferredAllocationRequest r;
  r.add_available_deviceids("a");
  r.add_must_include_deviceids("b");
  r.set_allocation_size(2);
  EXPECT_EQ(r.SerializeAsString(), Bytes({0x0a, 1, 'a', 0x12, 1, 'b', 0x18, 2}));
}

TEST(WireCompatTest, PodResourcesContainerDevicesFieldNumbers) {
  v1::ListPodResourcesResponse resp;
  v1::PodResources* pod = resp.add_pod_resources();
  pod->set_name("p");
  pod->set_namespace_("n");
  v1::ContainerResources* c = pod->add_containers();
  c->set_name("c");
  v1::ContainerDevices* d = c->add_devices();
  d->set_resource_name("r");
  d->add_device_ids("x");
  std::string devices = Bytes({0x0a, 1, 'r', 0x12, 1, 'x'});
  std::string container = Bytes({0x0a, 1, 'c', 0x12, static_cast<int>(devices.size())}) + devices;
  std::string podbytes = Bytes({0x0a, 1, 'p', 0x12, 1, 'n', 0x1a, static_cast<int>(container.size())}) +
                         container;
  EXPECT_EQ(resp.SerializeAsString(), Bytes({0x0a, static_cast<int>(podbytes.size())}) + podbytes);
}

TEST(WireCompatTest, PodResourcesPodLevelCpusAndMemoryAreFieldsFourAndFive) {
  v1::PodResources pod;
  pod.set_name("p");
  pod.add_cpu_ids(2);
  pod.add_cpu_ids(3);
  v1::ContainerMemory* m = pod.add_memory();
  m->set_memory_type("memory");
  m->set_size(1024);
  // cpu_ids(4) packed [2, 3]; memory(5){memory_type(1) "memory", size(2) varint 1024}
  std::string memory = Bytes({0x0a, 6}) + "memory" + Bytes({0x10, 0x80, 0x08});
  std::string want = Bytes({0x0a, 1, 'p', 0x22, 2, 2, 3, 0x2a, static_cast<int>(memory.size())}) + memory;
  EXPECT_EQ(pod.SerializeAsString(), want);
}

TEST(WireCompatTest, DynamicResourceClaimFieldsFollowThe131Layout) {
  v1::DynamicResource r;
  r.set_claim_name("c");
  r.set_claim_namespace("n");
  v1::ClaimResource* claim = r.add_claim_resources();
  claim->add_cdi_devices()->set_name("v/x=d");
  claim->set_driver_name("dr");
  claim->set_pool_name("pl");
  claim->set_device_name("dv");
  claim->set_share_id("s");
  std::string cdi = Bytes({0x0a, 5}) + "v/x=d";
  std::string claim_bytes = Bytes({0x0a, static_cast<int>(cdi.size())}) + cdi + Bytes({0x12, 2}) + "dr" +
                            Bytes({0x1a, 2}) + "pl" + Bytes({0x22, 2}) + "dv" + Bytes({0x2a, 1}) + "s";
  std::string want = Bytes({0x12, 1, 'c', 0x1a, 1, 'n', 0x22, static_cast<int>(claim_bytes.size())}) + claim_bytes;
  EXPECT_EQ(r.SerializeAsString(), want);
}

TEST(WireCompatTest, ClassNameIsGoneAndItsNumberReserved) {
  const google::protobuf::Descriptor* d = v1::DynamicResource::descriptor();
  EXPECT_EQ(d->FindFieldByName("class_name"), nullptr);
  EXPECT_EQ(d->FindFieldByNumber(1), nullptr);
  EXPECT_TRUE(d->IsReservedNumber(1));
  EXPECT_TRUE(d->IsReservedName("class_name"));
  // A pre-1.31 kubelet's class_name survives as an unknown field, not as data.
  v1::DynamicResource old;
  ASSERT_TRUE(old.ParseFromString(Bytes({0x0a, 3}) + "gpu" + Bytes({0x12, 1, 'c'})));
  EXPECT_EQ(old.claim_name(), "c");
}

TEST(WireCompatTest, AnUnsetShareIdIsAbsentFromTheWireAndAnEmptyOneIsPresent) {
  v1::ClaimResource unset;
  EXPECT_FALSE(unset.has_share_id());
  EXPECT_EQ(unset.SerializeAsString(), "");
  v1::ClaimResource empty;
  empty.set_share_id("");
  EXPECT_EQ(empty.SerializeAsString(), Bytes({0x2a, 0}));
}

TEST(WireCompatTest, PluginInfoFieldsFollowTheRegistrationApi) {
  pluginregistration::PluginInfo info;
  info.set_type("DRAPlugin");
  info.set_name("rpci.io");
  info.set_endpoint("/p/dra.sock");
  info.add_supported_versions("v1.DRAPlugin");
  info.add_supported_versions("v1beta1.DRAPlugin");
  std::string want = Bytes({0x0a, 9}) + "DRAPlugin" + Bytes({0x12, 7}) + "rpci.io" + Bytes({0x1a, 11}) +
                     "/p/dra.sock" + Bytes({0x22, 12}) + "v1.DRAPlugin" + Bytes({0x22, 17}) + "v1beta1.DRAPlugin";
  EXPECT_EQ(info.SerializeAsString(), want);
}

TEST(WireCompatTest, RegistrationStatusIsRegisteredOneErrorTwo) {
  pluginregistration::RegistrationStatus st;
  st.set_plugin_registered(true);
  st.set_error("e");
  EXPECT_EQ(st.SerializeAsString(), Bytes({0x08, 1, 0x12, 1, 'e'}));
}

namespace dra = k8s::io::kubelet::pkg::apis::dra;

// The DRA messages' bytes, which both DRA versions use: the v1beta1 service
// is declared with the v1 messages (upstream's two layouts are identical).
// claims(1){namespace(1) "ns", uid(2) "u1", name(3) "c"}
std::string ClaimRequestBytes() {
  std::string claim = Bytes({0x0a, 2}) + "ns" + Bytes({0x12, 2}) + "u1" + Bytes({0x1a, 1}) + "c";
  return Bytes({0x0a, static_cast<int>(claim.size())}) + claim;
}

template <typename Request>
void ExpectClaimBytes() {
  Request req;
  auto* c = req.add_claims();
  c->set_namespace_("ns");
  c->set_uid("u1");
  c->set_name("c");
  EXPECT_EQ(req.SerializeAsString(), ClaimRequestBytes());
}

TEST(WireCompatTest, DraClaimIsNamespaceUidName) {
  ExpectClaimBytes<dra::v1::NodePrepareResourcesRequest>();
  ExpectClaimBytes<dra::v1::NodeUnprepareResourcesRequest>();
}

// map entry: key(1) "u1", value(2){devices(1){request_names(1), pool_name(2),
// device_name(3), cdi_device_ids(4)}, error(2)}
std::string PrepareResponseBytes() {
  std::string device = Bytes({0x0a, 1, 'r', 0x12, 1, 'p', 0x1a, 1, 'd', 0x22, 5}) + "v/k=n";
  std::string value = Bytes({0x0a, static_cast<int>(device.size())}) + device + Bytes({0x12, 1, 'x'});
  std::string map_entry = Bytes({0x0a, 2}) + "u1" + Bytes({0x12, static_cast<int>(value.size())}) + value;
  return Bytes({0x0a, static_cast<int>(map_entry.size())}) + map_entry;
}

dra::v1::NodePrepareResourcesResponse SamplePrepareResponse() {
  dra::v1::NodePrepareResourcesResponse resp;
  auto& entry = (*resp.mutable_claims())["u1"];
  auto* d = entry.add_devices();
  d->add_request_names("r");
  d->set_pool_name("p");
  d->set_device_name("d");
  d->add_cdi_device_ids("v/k=n");
  entry.set_error("x");
  return resp;
}

TEST(WireCompatTest, DraPrepareResponseIsAMapByClaimUid) {
  EXPECT_EQ(SamplePrepareResponse().SerializeAsString(), PrepareResponseBytes());
}

TEST(WireCompatTest, DraUnprepareResponseErrorIsFieldOne) {
  dra::v1::NodeUnprepareResourcesResponse resp;
  (*resp.mutable_claims())["u"].set_error("e");
  std::string value = Bytes({0x0a, 1, 'e'});
  std::string map_entry = Bytes({0x0a, 1, 'u', 0x12, static_cast<int>(value.size())}) + value;
  EXPECT_EQ(resp.SerializeAsString(), Bytes({0x0a, static_cast<int>(map_entry.size())}) + map_entry);
}

TEST(WireCompatTest, DraV1beta1MethodsTakeAndReturnTheV1Messages) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  const auto* beta = pool->FindServiceByName("k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin");
  ASSERT_NE(beta, nullptr);
  for (const std::string method : {"NodePrepareResources", "NodeUnprepareResources"}) {
    const auto* m = beta->FindMethodByName(method);
    ASSERT_NE(m, nullptr) << method;
    EXPECT_EQ(m->input_type()->full_name(), "k8s.io.kubelet.pkg.apis.dra.v1." + method + "Request");
    EXPECT_EQ(m->output_type()->full_name(), "k8s.io.kubelet.pkg.apis.dra.v1." + method + "Response");
  }
}

std::string PathOf(const google::protobuf::ServiceDescriptor* service, const std::string& method) {
  const google::protobuf::MethodDescriptor* m = service->FindMethodByName(method);
  return m == nullptr ? "<missing " + method + ">" : "/" + service->full_name() + "/" + m->name();
}

TEST(WireCompatTest, EveryKubeletMethodHasTheKubeletsPath) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  const auto* registration = pool->FindServiceByName("v1beta1.Registration");
  const auto* plugin = pool->FindServiceByName("v1beta1.DevicePlugin");
  const auto* lister = pool->FindServiceByName("v1.PodResourcesLister");
  ASSERT_TRUE(registration != nullptr && plugin != nullptr && lister != nullptr);
  EXPECT_EQ(PathOf(registration, "Register"), "/v1beta1.Registration/Register");
  EXPECT_EQ(PathOf(plugin, "GetDevicePluginOptions"), "/v1beta1.DevicePlugin/GetDevicePluginOptions");
  EXPECT_EQ(PathOf(plugin, "ListAndWatch"), "/v1beta1.DevicePlugin/ListAndWatch");
  EXPECT_TRUE(plugin->FindMethodByName("ListAndWatch")->server_streaming());
  EXPECT_EQ(PathOf(plugin, "GetPreferredAllocation"), "/v1beta1.DevicePlugin/GetPreferredAllocation");
  EXPECT_EQ(PathOf(plugin, "Allocate"), "/v1beta1.DevicePlugin/Allocate");
  EXPECT_EQ(PathOf(plugin, "PreStartContainer"), "/v1beta1.DevicePlugin/PreStartContainer");
  EXPECT_EQ(PathOf(lister, "List"), "/v1.PodResourcesLister/List");
  EXPECT_EQ(PathOf(lister, "GetAllocatableResources"), "/v1.PodResourcesLister/GetAllocatableResources");
  EXPECT_EQ(PathOf(lister, "Get"), "/v1.PodResourcesLister/Get");
  EXPECT_EQ(plugin->method_count(), 5);
  EXPECT_EQ(registration->method_count(), 1);
}

TEST(WireCompatTest, RegistrationAndDraMethodsHaveTheKubeletsPaths) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  const auto* registration = pool->FindServiceByName("pluginregistration.Registration");
  ASSERT_NE(registration, nullptr);
  EXPECT_EQ(PathOf(registration, "GetInfo"), "/pluginregistration.Registration/GetInfo");
  EXPECT_EQ(PathOf(registration, "NotifyRegistrationStatus"),
            "/pluginregistration.Registration/NotifyRegistrationStatus");
  EXPECT_EQ(registration->method_count(), 2);
  for (const std::string version : {"v1beta1", "v1"}) {
    const std::string name = "k8s.io.kubelet.pkg.apis.dra." + version + ".DRAPlugin";
    const auto* dra = pool->FindServiceByName(name);
    ASSERT_NE(dra, nullptr) << name;
    EXPECT_EQ(PathOf(dra, "NodePrepareResources"), "/" + name + "/NodePrepareResources");
    EXPECT_EQ(PathOf(dra, "NodeUnprepareResources"), "/" + name + "/NodeUnprepareResources");
    EXPECT_EQ(dra->method_count(), 2);
  }
}

// Servers built from our generated code, answering with recognisable data.
class Registration final : public v1beta1::Registration::Service {
  grpc::Status Register(grpc::ServerContext*, const v1beta1::RegisterRequest* req,
                        v1beta1::Empty*) override {
    return req->resource_name() == "rpci.io/emu"
               ? grpc::Status::OK
               : grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "wrong resource");
  }
};
class Plugin final : public v1beta1::DevicePlugin::Service {
  grpc::Status Allocate(grpc::ServerContext*, const v1beta1::AllocateRequest* req,
                        v1beta1::AllocateResponse* resp) override {
    (*resp->add_container_responses()->mutable_envs())["N"] =
        std::to_string(req->container_requests_size());
    return grpc::Status::OK;
  }
};
class DraBeta final : public dra::v1beta1::DRAPlugin::Service {
  grpc::Status NodePrepareResources(grpc::ServerContext*, const dra::v1::NodePrepareResourcesRequest* req,
                                    dra::v1::NodePrepareResourcesResponse* resp) override {
    if (req->claims_size() != 1 || req->claims(0).uid() != "u1" || req->claims(0).namespace_() != "ns") {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "wrong claim");
    }
    *resp = SamplePrepareResponse();
    return grpc::Status::OK;
  }
};
class Lister final : public v1::PodResourcesLister::Service {
  grpc::Status List(grpc::ServerContext*, const v1::ListPodResourcesRequest*,
                    v1::ListPodResourcesResponse* resp) override {
    resp->add_pod_resources()->set_name("pod-a");
    return grpc::Status::OK;
  }
};

// Calls `path` with raw bytes the way a foreign client (the kubelet) would.
grpc::Status RawCall(grpc::Channel* channel, const std::string& path, const std::string& request,
                     std::string* response) {
  grpc::GenericStub stub(std::shared_ptr<grpc::Channel>(channel, [](grpc::Channel*) {}));
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1), resp;
  grpc::ClientContext ctx;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  stub.UnaryCall(&ctx, path, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    result = s;
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  std::vector<grpc::Slice> slices;
  if (result.ok() && resp.Dump(&slices).ok()) {
    for (const auto& s : slices) response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return result;
}

TEST(WireCompatTest, GeneratedServersAnswerAtTheKubeletsPathsOverAUnixSocket) {
  std::string dir = ::rpci::testing::MakeTempDir("rpci-wire", ::rpci::testing::TempDirUse::kSockets);
  std::string socket = std::string("unix://") + dir + "/wire.sock";
  Registration registration;
  Plugin plugin;
  Lister lister;
  DraBeta dra_beta;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&registration);
  builder.RegisterService(&plugin);
  builder.RegisterService(&lister);
  builder.RegisterService(&dra_beta);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto channel = grpc::CreateChannel(socket, grpc::InsecureChannelCredentials());

  std::string out;
  std::string register_bytes = Bytes({0x1a, 11}) + "rpci.io/emu";
  EXPECT_TRUE(RawCall(channel.get(), "/v1beta1.Registration/Register", register_bytes, &out).ok());

  out.clear();
  // AllocateRequest with two ContainerAllocateRequests.
  ASSERT_TRUE(RawCall(channel.get(), "/v1beta1.DevicePlugin/Allocate", Bytes({0x0a, 0, 0x0a, 0}), &out).ok());
  v1beta1::AllocateResponse alloc;
  ASSERT_TRUE(alloc.ParseFromString(out));
  EXPECT_EQ(alloc.container_responses(0).envs().at("N"), "2");

  out.clear();
  ASSERT_TRUE(RawCall(channel.get(), "/v1.PodResourcesLister/List", "", &out).ok());
  v1::ListPodResourcesResponse list;
  ASSERT_TRUE(list.ParseFromString(out));
  EXPECT_EQ(list.pod_resources(0).name(), "pod-a");

  // The kubelet's v1beta1 bytes at the v1beta1 path, answered in its bytes.
  out.clear();
  ASSERT_TRUE(RawCall(channel.get(), "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodePrepareResources",
                      ClaimRequestBytes(), &out)
                  .ok());
  EXPECT_EQ(out, PrepareResponseBytes());

  EXPECT_EQ(RawCall(channel.get(), "/deviceplugin.v1beta1.DevicePlugin/Allocate", "", &out).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  server->Shutdown();
  unlink((dir + "/wire.sock").c_str());
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace rpci
