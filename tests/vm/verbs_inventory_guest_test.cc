// Runs inside the test machine (//tests/vm:verbs_inventory_test): Soft-RoCE
// on a veth pair between two network namespaces, and `rpci-agent inventory`
// in one of them checked against rdma-core's own tools in the same guest:
// `ibv_devinfo -v` (node GUID, port state, link layer, GIDs) and `rdma link`
// (state, netdev).
#include <arpa/inet.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/netns.h"
#include "tests/harness/subprocess.h"
#include "tests/vm/soft_roce.h"

namespace rpci::testing {
namespace {

std::string Abs(const std::string& runfile) { return std::filesystem::absolute(runfile).string(); }

std::vector<std::string> Lines(const std::string& text) { return absl::StrSplit(text, '\n', absl::SkipEmpty()); }

// `rpci-agent inventory --json ...` in host a: one object per line, by name.
std::map<std::string, nlohmann::json> Inventory(const VethPair& pair, const std::vector<std::string>& flags,
                                                const std::string& key) {
  std::vector<std::string> argv = pair.ExecIn(0, {Abs("agent/rpci-agent"), "inventory", "--json"});
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<std::string> out = CommandOutput(argv);
  EXPECT_TRUE(out.ok()) << out.status();
  std::map<std::string, nlohmann::json> by;
  for (const std::string& line : Lines(out.ok() ? *out : "")) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains(key)) by[j[key].get<std::string>()] = j;
  }
  return by;
}

// What `ibv_devinfo -v -d <nic>` says about the NIC and its port 1.
struct DevinfoPort {
  std::string node_guid, state, link_layer;
  std::set<std::string> gids;  // 32 hex digits, non-zero entries
};

// A GID as 32 hex digits: from sysfs/rpci form (eight groups of four) or
// from ibv_devinfo's IPv6 text ("fe80::...", "::ffff:10.1.1.1").
std::string HexOnly(const std::string& gid) {
  in6_addr raw{};
  if (inet_pton(AF_INET6, gid.c_str(), &raw) != 1) return "bad gid " + gid;
  std::string hex;
  for (uint8_t b : raw.s6_addr) absl::StrAppendFormat(&hex, "%02x", b);
  return hex;
}

DevinfoPort Devinfo(const std::string& nic) {
  absl::StatusOr<std::string> out = CommandOutput({"ibv_devinfo", "-v", "-d", nic});
  EXPECT_TRUE(out.ok()) << out.status();
  DevinfoPort p;
  for (std::string line : Lines(out.ok() ? *out : "")) {
    line = std::string(absl::StripAsciiWhitespace(line));
    std::vector<std::string> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (kv.size() != 2) continue;
    const std::string value(absl::StripAsciiWhitespace(kv[1]));
    if (kv[0] == "node_guid") p.node_guid = value;
    if (kv[0] == "state") p.state = value.substr(0, value.find(' '));  // "PORT_ACTIVE (4)"
    if (kv[0] == "link_layer") p.link_layer = value;
    if (absl::StartsWith(kv[0], "GID[")) {
      const std::string hex = HexOnly(std::string(absl::StripAsciiWhitespace(value.substr(0, value.find(',')))));
      if (hex.find_first_not_of('0') != std::string::npos) p.gids.insert(hex);
    }
  }
  return p;
}

// `rdma link show <nic>/1` in host a: {"state": ..., "netdev": ...}.
std::map<std::string, std::string> RdmaLink(const VethPair& pair, const std::string& nic) {
  absl::StatusOr<std::string> out = CommandOutput(pair.ExecIn(0, {"rdma", "link", "show", nic + "/1"}));
  EXPECT_TRUE(out.ok()) << out.status();
  std::vector<std::string> words = absl::StrSplit(out.ok() ? *out : "", absl::ByAnyChar(" \n"), absl::SkipEmpty());
  std::map<std::string, std::string> fields;
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] == "state" || words[i] == "netdev") fields[words[i]] = words[i + 1];
  }
  return fields;
}

class VerbsInventoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<VethPair> pair = VethPair::Create("vinv");
    ASSERT_TRUE(pair.ok()) << pair.status();
    pair_.emplace(std::move(*pair));
    absl::StatusOr<SoftRoce> roce = SoftRoce::Create(*pair_, "i");
    ASSERT_TRUE(roce.ok()) << roce.status();
    roce_.emplace(std::move(*roce));
  }
  void TearDown() override {
    roce_.reset();
    pair_.reset();
  }
  std::optional<VethPair> pair_;
  std::optional<SoftRoce> roce_;
};

TEST_F(VerbsInventoryTest, NicsMatchIbvDevinfoAndRdmaLink) {
  std::map<std::string, nlohmann::json> nics = Inventory(*pair_, {"--show=nics"}, "name");
  const std::string a = roce_->nic(0), b = roce_->nic(1);
  ASSERT_TRUE(nics.count(a) && nics.count(b)) << "inventory lacks " << a << " or " << b;
  const nlohmann::json& nic = nics[a];
  std::printf("inventory: %s\n", nic.dump().c_str());

  DevinfoPort devinfo = Devinfo(a);
  EXPECT_EQ(nic["node_guid"], devinfo.node_guid);
  ASSERT_EQ(nic["ports"].size(), 1u);
  const nlohmann::json& port = nic["ports"][0];
  EXPECT_EQ("PORT_" + port["state"].get<std::string>(), devinfo.state);
  EXPECT_EQ(port["state"], "ACTIVE");
  EXPECT_EQ(port["link_layer"], devinfo.link_layer);
  std::set<std::string> gids;
  for (const auto& g : port["gids"]) gids.insert(HexOnly(g.get<std::string>()));
  EXPECT_EQ(gids, devinfo.gids);
  // The veth address is among them, IPv4-mapped (RoCE v2).
  std::vector<std::string> octets = absl::StrSplit(pair_->addr_a(), '.');
  char mapped[64];
  std::snprintf(mapped, sizeof(mapped), "00000000000000000000ffff%02x%02x%02x%02x", std::stoi(octets[0]),
                std::stoi(octets[1]), std::stoi(octets[2]), std::stoi(octets[3]));
  EXPECT_EQ(gids.count(mapped), 1u) << mapped;

  std::map<std::string, std::string> link = RdmaLink(*pair_, a);
  EXPECT_EQ(link["state"], port["state"]);
  EXPECT_EQ(link["netdev"], pair_->dev(0));
  EXPECT_EQ(port["netdev"], pair_->dev(0));
  // b's netdev lives in the other namespace: neither tool names it here.
  EXPECT_EQ(RdmaLink(*pair_, b).count("netdev"), 0u);
  EXPECT_EQ(nics[b]["ports"][0]["netdev"], "");

  // Its uverbs device is the character device rdma-core opens for it.
  const std::string uverbs = nic["uverbs_device"];
  struct stat st {};
  ASSERT_EQ(stat(uverbs.c_str(), &st), 0) << uverbs;
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  std::ifstream ibdev("/sys/class/infiniband_verbs/" + std::filesystem::path(uverbs).filename().string() + "/ibdev");
  std::string name;
  ibdev >> name;
  EXPECT_EQ(name, a);
  // rxe on a veth has no PCI location.
  EXPECT_EQ(nic["bdf"], "");
  EXPECT_EQ(nic["location_source"], "");
  EXPECT_EQ(nic["numa_node"], -1);
}

// QEMU's edu device shares no switch or NUMA node with any NIC; the rxe
// device on this namespace's veth (no PCI location) is its local NIC, the
// one whose netdev is in another namespace is not.
TEST_F(VerbsInventoryTest, DeviceWithOnlyASoftwareNicGetsTheOneOnThisNamespacesNetdev) {
  const std::string policy = "/tmp/rpci-verbs-inventory-policy.yaml";
  std::ofstream(policy) << "rules:\n  - {pool: edu, vendor: 0x1234, device: 0x11e8}\n";
  std::map<std::string, nlohmann::json> exported =
      Inventory(*pair_, {"--policy=" + policy, "--node=vm"}, "pool");
  ASSERT_EQ(exported.count("edu"), 1u);
  std::vector<std::string> local;
  for (const auto& n : exported["edu"]["local_nics"]) local.push_back(n);
  EXPECT_EQ(local, std::vector<std::string>{roce_->nic(0)}) << exported["edu"].dump();
}

}  // namespace
}  // namespace rpci::testing
