#include "agent/inventory/export_policy.h"

#include <string>
#include <vector>

#include "common/config.h"
#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

using rpci::v1::ExportedDevice;
using rpci::v1::PcieFunction;
using rpci::v1::RdmaNic;

absl::StatusOr<ExportPolicy> FromYaml(const std::string& yaml) {
  absl::StatusOr<nlohmann::json> json = ParseConfigText(yaml, "policy.yaml");
  if (!json.ok()) return json.status();
  return ExportPolicy::FromJson(*json, "policy.yaml");
}

PcieFunction Function(const std::string& bdf, uint32_t vendor, uint32_t device, uint32_t cls,
                      const std::string& driver = "", int numa = 0) {
  PcieFunction fn;
  fn.set_bdf(bdf);
  fn.set_vendor_id(vendor);
  fn.set_device_id(device);
  fn.set_class_code(cls);
  fn.set_driver(driver);
  fn.set_numa_node(numa);
  return fn;
}

std::vector<PcieFunction> Inventory() {
  return {
      Function("0000:00:00.0", 0x8086, 0x0d57, 0x060000),                // host bridge
      Function("0000:3b:00.0", 0x10de, 0x20b0, 0x030200, "vfio-pci", 0), // GPU
      Function("0000:3c:00.0", 0x10de, 0x20b0, 0x030200, "nvidia", 1),   // GPU, host driver
      Function("0000:5e:00.0", 0x144d, 0xa808, 0x010802, "nvme", 0),    // NVMe
      Function("0000:5f:00.0", 0x144d, 0xa808, 0x010802, "nvme", 1),     // NVMe
      Function("0000:af:00.0", 0x15b3, 0x101b, 0x020000, "mlx5_core", 0),
  };
}

// The pool each exported device went to, as "bdf=pool".
std::vector<std::string> Pools(const std::vector<ExportedDevice>& devices) {
  std::vector<std::string> out;
  for (const auto& d : devices) out.push_back(d.function().bdf() + "=" + d.pool());
  return out;
}

TEST(ExportPolicyTest, SelectsByClassVendorBdfAndDriverFirstRuleWins) {
  absl::StatusOr<ExportPolicy> policy = FromYaml(R"(
rules:
  - pool: gpu
    class: "0x0302"
    vendor: 0x10de
    driver: [vfio-pci]
  - pool: nvme
    class: "0x010802"
    bdf: ["0000:5e:00.0", "5f:00.0"]
  - pool: everything-nvidia
    vendor: ["10de"]
)");
  ASSERT_TRUE(policy.ok()) << policy.status();
  absl::StatusOr<std::vector<ExportedDevice>> devices =
      policy->Select("node-a", Inventory(), {});
  ASSERT_TRUE(devices.ok()) << devices.status();
  EXPECT_EQ(Pools(*devices), (std::vector<std::string>{
                                 "0000:3b:00.0=gpu", "0000:3c:00.0=everything-nvidia",
                                 "0000:5e:00.0=nvme", "0000:5f:00.0=nvme"}));
  const ExportedDevice& gpu = (*devices)[0];
  EXPECT_EQ(gpu.id(), "node-a-0000-3b-00-0");
  EXPECT_EQ(gpu.node(), "node-a");
  EXPECT_EQ(gpu.backend(), "vfio");
  EXPECT_EQ(gpu.function().vendor_id(), 0x10deu);
}

TEST(ExportPolicyTest, ClassMaskSelectsWholeClass) {
  absl::StatusOr<ExportPolicy> policy = FromYaml(R"(
rules:
  - pool: storage
    class: "0x010000/0xff0000"
)");
  ASSERT_TRUE(policy.ok()) << policy.status();
  std::vector<std::string> pools = Pools(*policy->Select("n", Inventory(), {}));
  EXPECT_EQ(pools, (std::vector<std::string>{"0000:5e:00.0=storage", "0000:5f:00.0=storage"}));
}

TEST(ExportPolicyTest, DevicesCarryTheirLocalNics) {
  absl::StatusOr<ExportPolicy> policy = FromYaml(R"({"rules": [{"pool": "nvme", "class": "0x0108"}]})");
  ASSERT_TRUE(policy.ok()) << policy.status();
  RdmaNic nic;
  nic.set_name("mlx5_0");
  nic.set_bdf("0000:af:00.0");
  nic.set_numa_node(0);
  absl::StatusOr<std::vector<ExportedDevice>> devices = policy->Select("n", Inventory(), {nic});
  ASSERT_TRUE(devices.ok()) << devices.status();
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ(std::vector<std::string>((*devices)[0].local_nics().begin(),
                                     (*devices)[0].local_nics().end()),
            std::vector<std::string>{"mlx5_0"});  // numa 0
  EXPECT_EQ((*devices)[1].local_nics_size(), 0);   // numa 1
}

TEST(ExportPolicyTest, EmptyPolicyExportsNothing) {
  absl::StatusOr<ExportPolicy> policy = FromYaml("rules: []\n");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE(policy->Select("n", Inventory(), {})->empty());
}

// Each bad policy is INVALID_ARGUMENT whose message names the key path.
TEST(ExportPolicyTest, BadPoliciesNameTheKey) {
  struct Case {
    const char* yaml;
    const char* key;
    const char* cause;
  };
  for (const Case& c : {
           Case{"rules: {pool: gpu}\n", "rules", "expected list of objects"},
           Case{"rules: [{class: \"0x03\"}]\n", "rules[0].pool", "required"},
           Case{"rules: [{pool: GPU_pool, class: \"0x03\"}]\n", "rules[0].pool", "DNS label"},
           Case{"rules: [{pool: 7, class: \"0x03\"}]\n", "rules[0].pool", "expected string"},
           Case{"rules: [{pool: gpu}]\n", "rules[0].class", "no selector"},
           Case{"rules: [{pool: gpu, class: 770}]\n", "rules[0].class", "quoted hex"},
           Case{"rules: [{pool: gpu, class: \"0x030\"}]\n", "rules[0].class", "2, 4 or 6"},
           Case{"rules: [{pool: gpu, class: [\"0x03\", \"0xzz\"]}]\n", "rules[0].class[1]",
                "hex"},
           Case{"rules: [{pool: gpu, class: \"0x030001/0xff0000\"}]\n", "rules[0].class",
                "outside the mask"},
           Case{"rules: [{pool: gpu, vendor: 0x1ffff}]\n", "rules[0].vendor", "out of range"},
           Case{"rules: [{pool: gpu, vendor: 131071}]\n", "rules[0].vendor", "0xffff"},
           Case{"rules: [{pool: gpu, vendor: \"nvidia\"}]\n", "rules[0].vendor", "hex id"},
           Case{"rules: [{pool: gpu, device: [0x20b0, true]}]\n", "rules[0].device[1]",
                "got boolean"},
           Case{"rules: [{pool: gpu, vendor: []}]\n", "rules[0].vendor", "empty list"},
           Case{"rules: [{pool: gpu, bdf: [\"0000:3b:00.9\"]}]\n", "rules[0].bdf[0]",
                "function"},
           Case{"rules: [{pool: gpu, driver: [1]}]\n", "rules[0].driver[0]", "driver name"},
           Case{"rules: [{pool: gpu, vendr: 0x10de, class: \"0x03\"}]\n", "rules[0].vendr",
                "unknown"},
           Case{"rulez: []\n", "rulez", "unknown"},
       }) {
    absl::StatusOr<ExportPolicy> policy = FromYaml(c.yaml);
    ASSERT_FALSE(policy.ok()) << c.yaml;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    std::string msg(policy.status().message());
    EXPECT_NE(msg.find(std::string("policy.yaml: ") + c.key), std::string::npos)
        << c.yaml << " -> " << msg;
    EXPECT_NE(msg.find(c.cause), std::string::npos) << c.yaml << " -> " << msg;
  }
}

TEST(ExportPolicyTest, NonObjectConfigIsInvalid) {
  absl::StatusOr<ExportPolicy> policy = ExportPolicy::FromJson(nlohmann::json::array(), "p.json");
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ExportPolicyTest, LoadFileReportsMissingFile) {
  absl::StatusOr<ExportPolicy> policy = ExportPolicy::LoadFile("/nonexistent/policy.yaml");
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kNotFound);
}

TEST(DeviceIdTest, IsNodeThenDashedBdf) {
  absl::StatusOr<std::string> id = DeviceId("gpu-node-1", *PciAddress::Parse("0000:3b:00.0"));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "gpu-node-1-0000-3b-00-0");
}

TEST(DeviceIdTest, LowerCasesAndDashesDottedNodeNames) {
  absl::StatusOr<std::string> id =
      DeviceId("Worker-7.Example.com", *PciAddress::Parse("0000:af:1f.7"));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "worker-7-example-com-0000-af-1f-7");
}

TEST(DeviceIdTest, RejectsIdsThatAreNotDnsLabels) {
  PciAddress a = *PciAddress::Parse("0000:3b:00.0");
  EXPECT_TRUE(DeviceId(std::string(50, 'n'), a).ok());  // 50 + 1 + 12 = 63
  absl::StatusOr<std::string> too_long = DeviceId(std::string(51, 'n'), a);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("63"), std::string::npos);
  EXPECT_FALSE(DeviceId("", a).ok());
  EXPECT_FALSE(DeviceId("-node", a).ok());
  EXPECT_FALSE(DeviceId("node_1", a).ok());
}

TEST(ExportPolicyTest, SelectFailsWholeOnABadNodeName) {
  absl::StatusOr<ExportPolicy> policy = FromYaml("rules: [{pool: gpu, class: \"0x03\"}]\n");
  ASSERT_TRUE(policy.ok()) << policy.status();
  absl::StatusOr<std::vector<ExportedDevice>> devices = policy->Select("bad_node", Inventory(), {});
  ASSERT_FALSE(devices.ok());
  EXPECT_NE(devices.status().message().find("bad_node"), std::string::npos);
}

TEST(ExportPolicyTest, EmbedsInALargerConfigThroughItsReader) {
  absl::StatusOr<nlohmann::json> json = ParseConfigText(R"(
node: a
export:
  rules:
    - pool: gpu
      vendor: 0x10de
      bogus: 1
)", "agent.yaml");
  ASSERT_TRUE(json.ok()) << json.status();
  ConfigReader reader(*json, "agent.yaml");
  std::string node;
  reader.String("node", &node);
  ConfigReader export_reader = reader.Object("export");
  ExportPolicy policy = ExportPolicy::Read(export_reader);
  absl::Status status = reader.Finish();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("agent.yaml: export.rules[0].bogus"), std::string::npos)
      << status;
  EXPECT_EQ(policy.rules().size(), 1u);
}

}  // namespace
}  // namespace rpci::agent
