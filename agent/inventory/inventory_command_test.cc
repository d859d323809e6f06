#include "agent/inventory/inventory_command.h"

#include <stdio.h>
#include <unistd.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "agent/inventory/testing/sysfs_tree.h"
#include "common/testing/command.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rpci::agent {
namespace {

using testing::SysfsTree;

struct CommandResult {
  int status;
  std::string out;
  std::string err;
};

CommandResult Inventory(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  int status = RunInventoryCommand(args, out, err);
  return {status, out.str(), err.str()};
}

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << line;
    out.push_back(j);
  }
  return out;
}

std::string FindLspci() {
  for (const char* p : {"/usr/bin/lspci", "/usr/sbin/lspci", "/bin/lspci", "/sbin/lspci"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

// `lspci -vmm ...` records (blank-line separated "Key:\tValue" lines), keyed by Slot.
std::map<std::string, std::map<std::string, std::string>> Lspci(const std::string& lspci,
                                                                const std::string& flags) {
  std::map<std::string, std::map<std::string, std::string>> records;
  const rpci::testing::CommandResult run = rpci::testing::RunCommand(lspci + " " + flags);
  EXPECT_EQ(run.exit_code, 0) << lspci << " " << flags;
  std::istringstream in(run.output);
  std::string line;
  std::map<std::string, std::string> rec;
  auto flush = [&] {
    if (!rec.empty()) records[rec["Slot"]] = rec;
    rec.clear();
  };
  while (std::getline(in, line)) {
    if (line.empty()) {
      flush();
      continue;
    }
    size_t colon = line.find(":\t");
    if (colon != std::string::npos) rec[line.substr(0, colon)] = line.substr(colon + 2);
  }
  flush();
  return records;
}

// "Red Hat, Inc. [1af4]" -> 0x1af4 (the last bracketed hex).
uint32_t BracketId(const std::string& text) {
  size_t open = text.rfind('[');
  size_t close = text.rfind(']');
  EXPECT_TRUE(open != std::string::npos && close > open) << text;
  return static_cast<uint32_t>(std::stoul(text.substr(open + 1, close - open - 1), nullptr, 16));
}

// The live machine's inventory must agree with lspci: same functions, same
// ids, class and revision (lspci -nn), same names and drivers (lspci -k).
TEST(InventoryCommandTest, LiveSysfsMatchesLspci) {
  std::string lspci = FindLspci();
  if (lspci.empty()) GTEST_SKIP() << "lspci not installed";
  CommandResult run = Inventory({"--json"});
  ASSERT_EQ(run.status, 0) << run.err;
  std::map<std::string, nlohmann::json> ours;
  for (const nlohmann::json& fn : JsonLines(run.out)) ours[fn["bdf"].get<std::string>()] = fn;

  auto ids = Lspci(lspci, "-vmm -nn -D");
  auto names = Lspci(lspci, "-vmm -k -D");
  ASSERT_FALSE(ids.empty());
  ASSERT_EQ(ours.size(), ids.size());
  for (const auto& [slot, rec] : ids) {
    SCOPED_TRACE(slot);
    ASSERT_EQ(ours.count(slot), 1u) << "lspci lists " << slot << ", the inventory does not";
    const nlohmann::json& fn = ours[slot];
    EXPECT_EQ(fn["vendor_id"], BracketId(rec.at("Vendor")));
    EXPECT_EQ(fn["device_id"], BracketId(rec.at("Device")));
    EXPECT_EQ(fn["class_code"].get<uint32_t>() >> 8, BracketId(rec.at("Class")));
    uint32_t prog_if = rec.count("ProgIf") ? std::stoul(rec.at("ProgIf"), nullptr, 16) : 0;
    EXPECT_EQ(fn["class_code"].get<uint32_t>() & 0xff, prog_if);
    uint32_t rev = rec.count("Rev") ? std::stoul(rec.at("Rev"), nullptr, 16) : 0;
    EXPECT_EQ(fn["revision"], rev);
    if (rec.count("SVendor")) {
      EXPECT_EQ(fn["subsystem_vendor_id"], BracketId(rec.at("SVendor")));
      EXPECT_EQ(fn["subsystem_device_id"], BracketId(rec.at("SDevice")));
    }
    if (rec.count("NUMANode")) {
      EXPECT_EQ(fn["numa_node"], std::stoi(rec.at("NUMANode")));
    }
    if (rec.count("IOMMUGroup")) {
      EXPECT_EQ(fn["iommu_group"], std::stoi(rec.at("IOMMUGroup")));
    }

    const auto& named = names.at(slot);
    EXPECT_EQ(fn["class_name"], named.at("Class"));
    EXPECT_EQ(fn["vendor_name"], named.at("Vendor"));
    EXPECT_EQ(fn["device_name"], named.at("Device"));
    EXPECT_EQ(fn["subsystem_vendor_name"], named.count("SVendor") ? named.at("SVendor") : "");
    EXPECT_EQ(fn["subsystem_name"], named.count("SDevice") ? named.at("SDevice") : "");
    EXPECT_EQ(fn["driver"], named.count("Driver") ? named.at("Driver") : "");
  }
}

TEST(InventoryCommandTest, TableListsEveryFunctionOfATree) {
  SysfsTree tree;
  testing::AddSwitchTopology(tree);
  CommandResult run = Inventory({"--sysfs-root", tree.root()});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("BDF"), std::string::npos);
  for (const char* bdf : {"0000:00:01.0", "0000:03:00.0", "0000:04:00.0", "0000:00:02.0"}) {
    EXPECT_NE(run.out.find(bdf), std::string::npos) << bdf << "\n" << run.out;
  }
  EXPECT_NE(run.out.find("10de:20b0"), std::string::npos) << run.out;
}

TEST(InventoryCommandTest, JsonHasOneObjectPerFunctionWithProblems) {
  SysfsTree tree;
  testing::AddSwitchTopology(tree);
  tree.WriteFile("devices/pci0000:00/0000:00:02.0/numa_node", "-1\n");
  CommandResult run = Inventory({"--sysfs-root=" + tree.root(), "--json"});
  ASSERT_EQ(run.status, 0) << run.err;
  std::vector<nlohmann::json> fns = JsonLines(run.out);
  ASSERT_EQ(fns.size(), 7u);
  EXPECT_EQ(fns[1]["bdf"], "0000:00:02.0");
  ASSERT_EQ(fns[1]["problems"].size(), 1u) << fns[1].dump();
  EXPECT_EQ(fns[1]["problems"][0]["field"], "numa_node");
  EXPECT_EQ(fns[5]["bdf"], "0000:03:00.0");
  EXPECT_EQ(fns[5]["parent_bridges"].size(), 3u);
}

TEST(InventoryCommandTest, ExportedShowsPolicySelectionWithLocalNics) {
  SysfsTree tree;
  testing::AddSwitchTopology(tree);
  tree.AddRdmaDevice("mlx5_0", "0000:04:00.0");
  tree.WriteFile("policy.yaml", "rules:\n  - pool: gpu\n    class: \"0x0302\"\n");
  CommandResult run = Inventory({"--sysfs-root", tree.root(), "--policy", tree.root() + "/policy.yaml",
                       "--node", "dev-1", "--json"});
  ASSERT_EQ(run.status, 0) << run.err;
  std::vector<nlohmann::json> devices = JsonLines(run.out);
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0]["id"], "dev-1-0000-03-00-0");
  EXPECT_EQ(devices[0]["pool"], "gpu");
  EXPECT_EQ(devices[0]["local_nics"], nlohmann::json::array({"mlx5_0"}));
}

TEST(InventoryCommandTest, NicsFromATree) {
  SysfsTree tree;
  testing::AddSwitchTopology(tree);
  tree.AddRdmaDevice("mlx5_0", "0000:04:00.0");
  CommandResult run = Inventory({"--sysfs-root", tree.root(), "--show", "nics", "--json"});
  ASSERT_EQ(run.status, 0) << run.err;
  std::vector<nlohmann::json> nics = JsonLines(run.out);
  ASSERT_EQ(nics.size(), 1u);
  EXPECT_EQ(nics[0]["bdf"], "0000:04:00.0");
}

TEST(InventoryCommandTest, HelpListsFlags) {
  CommandResult run = Inventory({"--help"});
  EXPECT_EQ(run.status, 0);
  for (const char* flag : {"--sysfs-root", "--json", "--pci-ids", "--policy", "--show"}) {
    EXPECT_NE(run.out.find(flag), std::string::npos) << flag;
  }
}

TEST(InventoryCommandTest, BadInputGivesClearErrors) {
  struct Case {
    std::vector<std::string> args;
    int status;
    const char* message;
  };
  SysfsTree tree;
  tree.WriteFile("bad.yaml", "rules: [{pool: gpu}]\n");
  for (const Case& c : {
           Case{{"--bogus"}, 2, "unknown flag --bogus"},
           Case{{"extra"}, 2, "unexpected argument \"extra\""},
           Case{{"--show", "everything"}, 2, "--show"},
           Case{{"--show", "exported"}, 2, "needs --policy"},
           Case{{"--rdma-source", "magic"}, 2, "--rdma-source"},
           Case{{"--sysfs-root", "/nonexistent"}, 1, "/nonexistent/bus/pci/devices"},
           Case{{"--pci-ids", "/nonexistent/pci.ids"}, 1, "/nonexistent/pci.ids"},
           Case{{"--sysfs-root", tree.root(), "--policy", tree.root() + "/bad.yaml"}, 1,
                "rules[0].class"},
           Case{{"--sysfs-root", tree.root(), "--policy", tree.root() + "/none.yaml"}, 1,
                "none.yaml"},
       }) {
    CommandResult run = Inventory(c.args);
    EXPECT_EQ(run.status, c.status) << c.args[0] << ": " << run.err;
    EXPECT_NE(run.err.find(c.message), std::string::npos) << c.args[0] << ": " << run.err;
  }
}

}  // namespace
}  // namespace rpci::agent
