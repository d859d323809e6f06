#include "agent/app/agent_config.h"

#include <fstream>

#include "agent/app/agent_app.h"
#include "common/config.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

absl::Status Read(const std::string& yaml, AgentOptions* o) {
  absl::StatusOr<nlohmann::json> json = ParseConfigText(yaml, "agent.yaml");
  if (!json.ok()) return json.status();
  return ReadAgentConfig(*json, "agent.yaml", o);
}

// The config is refused with INVALID_ARGUMENT naming `what`.
void ExpectRefusedNaming(const std::string& yaml, const std::string& what) {
  AgentOptions o;
  absl::Status s = Read(yaml, &o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(what), std::string::npos) << s;
}

constexpr char kGood[] = R"(
node: dev-a
labels: {zone: z1}
controller: {address: "ctl:7400", insecure: true}
session: {listen: "0.0.0.0:7450", state_dir: /tmp, grace_seconds: 5, throttle_mib_per_second: 64, throttle_nice: 10}
fabric: {provider: "tcp;ofi_rxm", address: 10.0.0.5, universe_size: 32, busy_poll_us: 20}
inventory: {sysfs_root: /sys, vfio: false}
export:
  rules:
    - pool: nvme
      class: "0x010802"
emu:
  - {pool: emu, count: 2, dma_size: 65536}
http: {listen: "127.0.0.1:7451"}
)";

TEST(AgentConfigTest, ReadsEverySection) {
  AgentOptions o;
  ASSERT_TRUE(Read(kGood, &o).ok()) << Read(kGood, &o);
  EXPECT_EQ(o.node, "dev-a");
  EXPECT_EQ(o.labels.at("zone"), "z1");
  EXPECT_EQ(o.controller, "ctl:7400");
  EXPECT_TRUE(o.tls.insecure);
  EXPECT_EQ(o.session_grace, absl::Seconds(5));
  EXPECT_EQ(o.session_throttle.bytes_per_second, uint64_t{64} << 20);
  EXPECT_EQ(o.session_throttle.burst_bytes, uint64_t{16} << 20);  // default
  EXPECT_EQ(o.session_throttle.nice, 10);
  EXPECT_EQ(o.fabric.provider, "tcp;ofi_rxm");
  EXPECT_EQ(o.fabric.node, "10.0.0.5");
  EXPECT_EQ(o.fabric.universe_size, 32u);
  EXPECT_EQ(o.fabric.busy_poll, absl::Microseconds(20));
  ASSERT_EQ(o.export_policy.rules().size(), 1u);
  EXPECT_EQ(o.export_policy.rules()[0].pool, "nvme");
  ASSERT_EQ(o.emu.size(), 1u);
  EXPECT_EQ(o.emu[0].count, 2);
  EXPECT_EQ(o.emu[0].dma_size, 65536);
  EXPECT_EQ(o.http_listen, "127.0.0.1:7451");
  EXPECT_TRUE(ValidateAgentOptions(o).ok()) << ValidateAgentOptions(o);
}

TEST(AgentConfigTest, UnknownKeyIsNamed) { ExpectRefusedNaming("node: a\nsession: {listen: ':1', statedir: /x}\n", "session.statedir"); }

TEST(AgentConfigTest, BadProviderIsNamed) {
  ExpectRefusedNaming("fabric: {provider: udp}\n", "fabric.provider");
  // A flag can carry one too; validation names the key.
  AgentOptions f;
  f.node = "a";
  f.controller = "c:1";
  f.tls.insecure = true;
  f.emu = {EmuDevicesConfig{}};
  f.fabric.provider = "udp";
  absl::Status s = ValidateAgentOptions(f);
  EXPECT_NE(s.message().find("fabric.provider: \"udp\""), std::string::npos) << s;
}

TEST(AgentConfigTest, MissingControllerIsNamed) {
  AgentOptions o;
  ASSERT_TRUE(Read("node: a\ncontroller: {insecure: true}\nemu: [{count: 1}]\n", &o).ok());
  absl::Status s = ValidateAgentOptions(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("controller.address: required"), std::string::npos) << s;
  // AgentApp refuses the same options before touching anything.
  auto app = AgentApp::Create(o, DeviceBackends{});
  ASSERT_FALSE(app.ok());
  EXPECT_NE(app.status().message().find("controller.address"), std::string::npos);
}

TEST(AgentConfigTest, BadValuesAreNamedByPath) {
  AgentOptions o;
  absl::Status s = Read(
      "emu: [{count: 2}, {pool: Bad_Pool, bar0_size: 4096, dma_size: 100}]\n"
      "export: {rules: [{pool: gpu, vendor: nope}]}\n"
      "controller: {address: 7}\n",
      &o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  for (const char* key : {"emu[1].pool", "emu[1].bar0_size", "emu[1].dma_size", "export.rules[0].vendor",
                          "controller.address"}) {
    EXPECT_NE(s.message().find(key), std::string::npos) << key << " in " << s;
  }
}

TEST(AgentConfigTest, WithoutTlsOrInsecureTheAgentRefusesToStart) {
  AgentOptions o;
  o.node = "a";
  o.controller = "c:1";
  o.emu = {EmuDevicesConfig{}};
  absl::Status s = ValidateAgentOptions(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("refusing to run without peer authentication"), std::string::npos) << s;
  auto app = AgentApp::Create(o, DeviceBackends{});
  EXPECT_EQ(app.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AgentConfigTest, TlsFilesComeAllThreeAndNotWithInsecure) {
  AgentOptions o;
  o.node = "a";
  o.controller = "c:1";
  o.emu = {EmuDevicesConfig{}};
  o.tls.cert_file = "/etc/rpci/tls.crt";
  absl::Status s = ValidateAgentOptions(o);
  EXPECT_NE(s.message().find("tls: cert, key and ca are all required"), std::string::npos) << s;
  o.tls.insecure = true;
  s = ValidateAgentOptions(o);
  EXPECT_NE(s.message().find("tls: insecure is set together with TLS files"), std::string::npos) << s;
  o.tls.cert_file.clear();
  EXPECT_TRUE(ValidateAgentOptions(o).ok());
  o.emu.clear();
  s = ValidateAgentOptions(o);
  EXPECT_NE(s.message().find("emu: nothing to export"), std::string::npos) << s;
}

TEST(AgentConfigTest, ANodeCertificateFromTheControllerIsConfiguredUnderTls) {
  AgentOptions o;
  ASSERT_TRUE(Read("node: a\ncontroller: {address: \"c:1\"}\nemu: [{count: 1}]\n"
                   "tls: {ca: /etc/rpci/ca/ca.crt, identity_address: \"ctl:7402\", "
                   "token_file: /var/run/secrets/rpci/token, cert_dir: /run/rpci/tls}\n",
                   &o)
                  .ok());
  EXPECT_EQ(o.tls.identity_address, "ctl:7402");
  EXPECT_EQ(o.tls.token_file, "/var/run/secrets/rpci/token");
  EXPECT_EQ(o.tls.cert_dir, "/run/rpci/tls");
  EXPECT_TRUE(ValidateAgentOptions(o).ok()) << ValidateAgentOptions(o);
}

TEST(AgentConfigTest, NotAMappingIsRefused) { ExpectRefusedNaming("- just\n- a list\n", "expected a mapping"); }

TEST(AgentConfigTest, FlagsOverrideTheConfigFile) {
  std::string path = ::rpci::testing::MakeTempDir("agent-config") + "/agent.yaml";
  std::ofstream(path) << kGood;
  AgentOptions o;
  ServeFlags extra;
  FlagSet flags("rpci-agent serve [flags]", "test");
  AddServeFlags(flags, &o, &extra);
  ASSERT_TRUE(flags.Parse(std::vector<std::string>{"--config", path, "--node=dev-b", "--emu-count=3"}).ok());
  flags.Apply();
  ASSERT_TRUE(LoadAgentConfig(o.config_file, &o).ok());
  flags.Apply();
  ApplyServeFlags(flags, extra, &o);
  EXPECT_EQ(o.node, "dev-b");
  EXPECT_EQ(o.controller, "ctl:7400");
  ASSERT_EQ(o.emu.size(), 1u);
  EXPECT_EQ(o.emu[0].count, 3);
}

TEST(AgentConfigTest, ExampleFileIsValid) {
  AgentOptions o;
  absl::Status s = LoadAgentConfig("deploy/config/agent-config.yaml", &o);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(o.emu.empty());
  EXPECT_FALSE(o.export_policy.rules().empty());
  EXPECT_TRUE(ValidateAgentOptions(o).ok()) << ValidateAgentOptions(o);
  EXPECT_FALSE(o.tls.insecure);
}

}  // namespace
}  // namespace rpci::agent
