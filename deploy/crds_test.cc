// The CRDs in deploy/crds are valid apiextensions.k8s.io/v1 with structural
// schemas; every example in deploy/examples validates against its CRD and
// decodes in the controller; broken variants fail naming the field; and the
// JSON the controller writes (controller/crd_codec.cc) validates.
#include <filesystem>
#include <map>

#include "absl/time/time.h"
#include "controller/crd_codec.h"
#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "tests/schema/openapi.h"

namespace rpci {
namespace {

using nlohmann::json;
using schema::ValidateObject;

std::vector<json> Load(const std::string& path) {
  absl::StatusOr<std::vector<json>> docs = schema::LoadYamlFile(path);
  EXPECT_TRUE(docs.ok()) << docs.status();
  return docs.ok() ? *docs : std::vector<json>{};
}

json LoadOne(const std::string& path) {
  std::vector<json> docs = Load(path);
  EXPECT_EQ(docs.size(), 1u) << path;
  return docs.empty() ? json() : docs[0];
}

// CRD by kind.
const std::map<std::string, json>& Crds() {
  static const std::map<std::string, json> crds = [] {
    std::map<std::string, json> out;
    for (const auto& entry : std::filesystem::directory_iterator("deploy/crds")) {
      json crd = LoadOne(entry.path().string());
      out[crd["spec"]["names"]["kind"].get<std::string>()] = crd;
    }
    return out;
  }();
  return crds;
}

const json& Crd(const std::string& kind) { return Crds().at(kind); }

std::vector<std::string> ExampleFiles() {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator("deploy/examples")) {
    files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(Crds, AreValidStructuralCustomResourceDefinitions) {
  ASSERT_EQ(Crds().size(), 3u);
  for (const auto& [kind, crd] : Crds()) {
    EXPECT_EQ(schema::Describe(schema::CheckCrd(crd)), "") << kind;
  }
}

TEST(Crds, HaveTheAgreedNamesScopesAndStatusSubresource) {
  struct Want {
    std::string kind, plural, short_name, scope;
  };
  for (const Want& w : std::vector<Want>{{"PcieDevice", "pciedevices", "pcidev", "Cluster"},
                                         {"DevicePool", "devicepools", "pcipool", "Cluster"},
                                         {"DeviceAttachment", "deviceattachments", "pciattach", "Namespaced"}}) {
    const json& spec = Crd(w.kind)["spec"];
    EXPECT_EQ(spec["group"], "rpci.io");
    EXPECT_EQ(spec["scope"], w.scope) << w.kind;
    EXPECT_EQ(spec["names"]["plural"], w.plural);
    EXPECT_EQ(spec["names"]["shortNames"], json::array({w.short_name}));
    EXPECT_EQ(spec["names"]["categories"], json::array({"rpci"}));
    ASSERT_EQ(spec["versions"].size(), 1u);
    EXPECT_EQ(spec["versions"][0]["name"], "v1alpha1");
    EXPECT_EQ(spec["versions"][0]["subresources"]["status"], json::object()) << w.kind;
  }
}

TEST(Crds, PrintTheColumnsAnAdminAsksFor) {
  auto columns = [](const std::string& kind) {
    std::vector<std::string> names;
    for (const json& c : Crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]) {
      if (c.value("priority", 0) == 0) names.push_back(c["name"]);
    }
    return names;
  };
  EXPECT_EQ(columns("PcieDevice"),
            (std::vector<std::string>{"Node", "BDF", "Device", "Pool", "Phase", "Assigned-Node", "Age"}));
  EXPECT_EQ(columns("DeviceAttachment"), (std::vector<std::string>{"Device", "Node", "Pod-Namespace", "Pod", "State",
                                                                    "Session", "Writes", "Age"}));
  EXPECT_EQ(columns("DevicePool"), (std::vector<std::string>{"Resource", "Spares", "Max-Per-Node", "Locality",
                                                             "Available", "Assigned", "Attached", "Age"}));
}

TEST(Examples, EveryCustomObjectValidatesAgainstItsCrd) {
  int checked = 0;
  for (const std::string& file : ExampleFiles()) {
    for (const json& object : Load(file)) {
      const std::string kind = object.value("kind", "");
      // Built-in kinds (Pod, Namespace; resource.k8s.io's ResourceClaimTemplate,
      // which examples_apply_test applies to the test API server) have no CRD.
      if (object.value("apiVersion", "").rfind("rpci.io/", 0) != 0) continue;
      ASSERT_TRUE(Crds().count(kind)) << file << ": no CRD for kind " << kind;
      absl::Status s = ValidateObject(Crd(kind), object);
      EXPECT_TRUE(s.ok()) << file << ": " << s.message();
      ++checked;
    }
  }
  EXPECT_GE(checked, 5);
}

TEST(Examples, CoverEveryKind) {
  std::set<std::string> kinds;
  for (const std::string& file : ExampleFiles()) {
    for (const json& object : Load(file)) kinds.insert(object.value("kind", ""));
  }
  EXPECT_EQ(kinds, (std::set<std::string>{"DeviceAttachment", "DevicePool", "Namespace", "PcieDevice", "Pod",
                                               "ResourceClaimTemplate"}));
}

TEST(Examples, DecodeInTheController) {
  for (const std::string& file : ExampleFiles()) {
    for (const json& object : Load(file)) {
      const std::string kind = object.value("kind", "");
      absl::Status s;
      if (kind == "PcieDevice") s = controller::DeviceFromObject(object).status();
      if (kind == "DevicePool") s = controller::PoolFromObject(object).status();
      if (kind == "DeviceAttachment") s = controller::AttachmentFromObject(object).status();
      EXPECT_TRUE(s.ok()) << file << ": " << s;
    }
  }
}

TEST(Examples, PodsRequestADefinedPool) {
  std::set<std::string> resources;
  std::set<std::string> claim_templates;
  std::vector<json> pods;
  for (const std::string& file : ExampleFiles()) {
    for (const json& object : Load(file)) {
      const std::string kind = object.value("kind", "");
      if (kind == "DevicePool") resources.insert("rpci.io/" + object["metadata"]["name"].get<std::string>());
      if (kind == "ResourceClaimTemplate") claim_templates.insert(object["metadata"]["name"].get<std::string>());
      if (kind == "Pod") pods.push_back(object);
    }
  }
  ASSERT_FALSE(pods.empty());
  for (const json& pod : pods) {
    int requested = 0;
    // The DRA way (pod-emu-dra.yaml): a claim from a template in the examples.
    for (const json& claim : pod["spec"].value("resourceClaims", json::array())) {
      const std::string tmpl = claim.value("resourceClaimTemplateName", "");
      EXPECT_TRUE(claim_templates.count(tmpl)) << tmpl << " is not a ResourceClaimTemplate in deploy/examples";
      ++requested;
    }
    for (const json& c : pod["spec"]["containers"]) {
      const json limits = c["resources"].value("limits", json::object());
      for (auto& [name, count] : limits.items()) {
        if (name.rfind("rpci.io/", 0) != 0) continue;
        EXPECT_TRUE(resources.count(name)) << name << " is not a DevicePool in deploy/examples";
        EXPECT_TRUE(count.is_number_integer() && count.get<int>() > 0) << count;
        ++requested;
      }
    }
    EXPECT_GT(requested, 0) << pod["metadata"]["name"];
  }
}

// A broken variant of an example: `mutate` breaks it, `field` must be named.
struct Broken {
  std::string file;
  std::function<void(json&)> mutate;
  std::string field;
};

TEST(Examples, BrokenVariantsFailNamingTheField) {
  const std::vector<Broken> cases = {
      {"pciedevice-emu.yaml", [](json& o) { o["spec"]["function"]["bdf"] = "3b:00.0"; }, "spec.function.bdf"},
      {"pciedevice-emu.yaml", [](json& o) { o["spec"]["function"]["bdf"] = "0000:3B:00.0"; }, "spec.function.bdf"},
      {"pciedevice-emu.yaml", [](json& o) { o["spec"]["function"]["bdf"] = "0000:3b:00.8"; }, "spec.function.bdf"},
      {"pciedevice-emu.yaml", [](json& o) { o["spec"]["function"]["vendorId"] = 70000; }, "spec.function.vendorId"},
      {"pciedevice-emu.yaml", [](json& o) { o["spec"]["function"]["bars"][0]["size"] = 4096; }, "spec.function.bars[0].size"},
      {"pciedevice-emu.yaml", [](json& o) { o["spec"]["backend"] = "sysfs-bar"; }, "spec.backend"},
      {"pciedevice-emu.yaml", [](json& o) { o["spec"].erase("node"); }, "spec.node"},
      {"pciedevice-emu.yaml", [](json& o) { o["spec"]["pool"] = "GPU"; }, "spec.pool"},
      {"pciedevice-emu.yaml", [](json& o) { o["spec"]["bdf"] = "0000:00:10.0"; }, "spec.bdf"},
      {"pciedevice-emu.yaml", [](json& o) { o["status"]["phase"] = "Running"; }, "status.phase"},
      {"pciedevice-emu.yaml", [](json& o) { o["status"]["assignedTime"] = "yesterday"; }, "status.assignedTime"},
      {"pciedevice-emu.yaml", [](json& o) { o["status"]["conditions"][0]["status"] = "Yes"; }, "status.conditions[0].status"},
      {"pciedevice-emu.yaml", [](json& o) { o["status"]["conditions"][1]["type"] = "Healthy"; }, "status.conditions[1]"},
      {"pciedevice-emu.yaml", [](json& o) { o["metadata"]["namespace"] = "default"; }, "metadata.namespace"},
      {"devicepool-emu.yaml", [](json& o) { o["spec"]["resourceName"] = "nvidia.com/gpu"; }, "spec.resourceName"},
      {"devicepool-emu.yaml", [](json& o) { o["spec"]["sparesPerNode"] = -1; }, "spec.sparesPerNode"},
      {"devicepool-emu.yaml", [](json& o) { o["spec"]["maxPerNode"] = "4"; }, "spec.maxPerNode"},
      {"devicepool-emu.yaml", [](json& o) { o["spec"]["locality"] = "PreferSameNuma"; }, "spec.locality"},
      {"devicepool-gpu.yaml", [](json& o) { o["spec"]["selector"]["matchLabels"]["rpci.io/tier"] = 1; },
       "spec.selector.matchLabels.rpci.io/tier"},
      {"devicepool-gpu.yaml", [](json& o) { o["metadata"]["name"] = "GPU_pool"; }, "metadata.name"},
      {"deviceattachment.yaml", [](json& o) { o["status"]["state"] = "Done"; }, "status.state"},
      {"deviceattachment.yaml", [](json& o) { o["status"]["bytesIn"] = -5; }, "status.bytesIn"},
      // A token in the attachment is refused (the API server would prune it).
      {"deviceattachment.yaml", [](json& o) { o["spec"]["token"] = "q83vEjRWeJCrze8SNFZ4kKvN7xI="; }, "spec.token"},
      {"deviceattachment.yaml", [](json& o) { o["spec"]["grantId"] = "grant-1"; }, "spec.grantId"},
      {"deviceattachment.yaml", [](json& o) { o["metadata"].erase("namespace"); }, "metadata.namespace"},
  };
  for (const Broken& b : cases) {
    json object = LoadOne("deploy/examples/" + b.file);
    b.mutate(object);
    absl::Status s = ValidateObject(Crd(object["kind"]), object);
    ASSERT_FALSE(s.ok()) << b.file << " broken at " << b.field << " still validates";
    EXPECT_NE(s.message().find("\n" + b.field + ": "), std::string::npos)
        << b.file << ": expected a violation at " << b.field << ", got:\n" << s.message();
  }
}

// Whether `object` validates against the CRD of `kind`; a failure shows the
// object.
::testing::AssertionResult ValidatesAgainst(const std::string& kind, const json& object) {
  absl::Status s = ValidateObject(Crd(kind), object);
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << s.message() << "\n" << object.dump(2);
}

// dev-a-0000-3b-00-0 attached to compute node cmp-1 under a grant with a
// 32-byte token; the caller says for whom.
controller::Attachment SampleAttachment() {
  controller::Attachment a;
  a.grant_id = "g-0123456789abcdef01234567";
  a.device_id = "dev-a-0000-3b-00-0";
  a.node = "cmp-1";
  a.token = std::string(32, '\xab');
  return a;
}

controller::Device SampleDevice() {
  controller::Device d;
  d.exported.set_id("dev-a-0000-3b-00-0");
  d.exported.set_node("dev-a");
  d.exported.set_pool("gpu");
  d.exported.set_backend("vfio");
  d.exported.add_local_nics("mlx5_0");
  (*d.exported.mutable_labels())["rpci.io/tier"] = "gpu";
  v1::PcieFunction* f = d.exported.mutable_function();
  f->set_bdf("0000:3b:00.0");
  f->set_vendor_id(0x10de);
  f->set_device_id(0x2236);
  f->set_class_code(0x030200);
  f->set_numa_node(-1);
  f->set_iommu_group(12);
  f->set_device_name("GA102GL [A10]");
  v1::Bar* bar = f->add_bars();
  bar->set_index(1);
  bar->set_start(uint64_t{1} << 40);
  bar->set_size(uint64_t{32} << 30);
  bar->set_is_64bit(true);
  bar->set_prefetchable(true);
  f->mutable_link()->set_current_speed("16.0 GT/s PCIe");
  f->mutable_link()->set_current_width(16);
  f->mutable_sriov()->set_total_vfs(4);
  f->mutable_sriov()->add_virtfns("0000:3b:00.1");
  f->add_parent_bridges("0000:3a:00.0");
  v1::FieldProblem* p = f->add_problems();
  p->set_field("current_link_speed");
  p->set_message("unreadable");
  return d;
}

TEST(ControllerJson, UnassignedDeviceValidates) {
  controller::Device d = SampleDevice();
  d.exported.set_dma_size(uint64_t{1} << 20);
  json object = controller::DeviceToObject(d, absl::FromUnixSeconds(1714557600), 1);
  EXPECT_TRUE(ValidatesAgainst("PcieDevice", object));
  EXPECT_EQ(object["spec"]["dmaSize"], "1048576");
  absl::StatusOr<controller::Device> back = controller::DeviceFromObject(object);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->exported.dma_size(), uint64_t{1} << 20);
}

TEST(ControllerJson, AttachedUnhealthyDrainingDeviceValidates) {
  controller::Device d = SampleDevice();
  const absl::Time now = absl::FromUnixSeconds(1714557600);
  d.healthy = false;
  d.health_reason = "DeviceServerLost";
  d.health_changed = now;
  d.assigned_node = "cmp-1";
  d.assigned_changed = now - absl::Minutes(5);
  d.last_used = now;
  d.releasing_from = "cmp-2";
  d.releasing_until = now + absl::Seconds(30);
  d.draining = true;
  d.drain_requested = true;
  d.attachment = "g-0123456789abcdef01234567";
  d.reason = "PendingPod";
  json object = controller::DeviceToObject(d, now, 7);
  EXPECT_TRUE(ValidatesAgainst("PcieDevice", object));
}

TEST(ControllerJson, AttachmentValidates) {
  controller::Attachment a = SampleAttachment();
  a.pod_namespace = "ml";
  a.pod_name = "trainer-0";
  a.container_name = "train";
  a.created = absl::FromUnixSeconds(1714557600);
  a.expires = a.created + absl::Minutes(5);
  a.session_id = session::SessionId(0x2a);
  a.writes_applied = uint64_t{1} << 40;
  a.bytes_in = 4096;
  json object = controller::AttachmentToObject(a, "rpci-system");
  EXPECT_TRUE(ValidatesAgainst("DeviceAttachment", object));
  EXPECT_EQ(object["metadata"]["namespace"], "rpci-system");
  EXPECT_EQ(object["spec"]["podNamespace"], "ml");
  EXPECT_FALSE(object["spec"].contains("token")) << "the grant token is a secret";
  EXPECT_EQ(object.dump().find(absl::Base64Escape(a.token)), std::string::npos);
}

TEST(Crds, RefuseAPoolWhoseResourceNameNamesAnotherPool) {
  json pool = LoadOne("deploy/examples/devicepool-emu.yaml");
  EXPECT_TRUE(ValidateObject(Crd("DevicePool"), pool).ok());
  pool["spec"]["resourceName"] = "rpci.io/gpu";
  absl::Status s = ValidateObject(Crd("DevicePool"), pool);
  EXPECT_NE(s.message().find("spec.resourceName must be rpci.io/<metadata.name>"), std::string::npos) << s;
  pool["spec"].erase("resourceName");
  EXPECT_TRUE(ValidateObject(Crd("DevicePool"), pool).ok());
}

TEST(ControllerJson, PoolValidates) {
  controller::PoolSpec pool;
  pool.name = "gpu";
  pool.selector = {{"rpci.io/tier", "gpu"}};
  pool.spares_per_node = 2;
  pool.max_per_node = 4;
  pool.idle_release_seconds = 600;
  pool.locality = controller::Locality::kRdma;
  json object = controller::PoolToObject(pool);
  EXPECT_TRUE(ValidatesAgainst("DevicePool", object));
}

TEST(ControllerJson, ClaimAttachmentValidatesAndDecodesWithItsClaim) {
  controller::Attachment a = SampleAttachment();
  a.claim_uid = "0b1c2d3e-0000-4000-8000-000000000001";
  a.claim_namespace = "ml";
  a.claim_name = "trainer-0-gpu";
  a.claim_request = "gpu";
  json object = controller::AttachmentToObject(a, "rpci-system");
  EXPECT_TRUE(ValidatesAgainst("DeviceAttachment", object));
  EXPECT_EQ(object["status"]["state"], "Attached");
  object["spec"]["token"] = absl::Base64Escape(a.token);
  absl::StatusOr<controller::Attachment> back = controller::AttachmentFromObject(object);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->claim_uid, a.claim_uid);
  EXPECT_EQ(back->claim_namespace, "ml");
  EXPECT_EQ(back->claim_name, "trainer-0-gpu");
  EXPECT_EQ(back->claim_request, "gpu");
  object["spec"]["claim"].erase("uid");
  EXPECT_FALSE(ValidateObject(Crd("DeviceAttachment"), object).ok()) << "a claim without its uid";
}

TEST(Crds, APoolsAllocationModeIsDevicePluginDraOrBoth) {
  json pool = LoadOne("deploy/examples/devicepool-emu.yaml");
  for (const char* mode : {"devicePlugin", "dra", "both"}) {
    pool["spec"]["allocationMode"] = mode;
    EXPECT_TRUE(ValidateObject(Crd("DevicePool"), pool).ok()) << mode;
    absl::StatusOr<controller::PoolSpec> spec = controller::PoolFromObject(pool);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(controller::AllocationModeName(spec->allocation_mode), mode);
  }
  pool["spec"]["allocationMode"] = "DRA";
  absl::Status s = ValidateObject(Crd("DevicePool"), pool);
  EXPECT_NE(s.message().find("spec.allocationMode"), std::string::npos) << s;
  EXPECT_FALSE(controller::PoolFromObject(pool).ok());
  pool["spec"].erase("allocationMode");
  EXPECT_EQ(controller::PoolFromObject(pool)->allocation_mode, controller::AllocationMode::kDevicePlugin);
}

}  // namespace
}  // namespace rpci
