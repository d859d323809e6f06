#include "common/config.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci {
namespace {

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = testing::MakeTempDir("config") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(LoadConfigFileTest, MissingFileIsNotFoundNamingThePath) {
  absl::StatusOr<nlohmann::json> c = LoadConfigFile("/nonexistent/agent.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("/nonexistent/agent.yaml"), std::string::npos);
}

TEST(LoadConfigFileTest, YamlSyntaxErrorNamesFileAndLine) {
  std::string path = WriteTemp("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n");
  absl::StatusOr<nlohmann::json> c = LoadConfigFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("bad.yaml: line"), std::string::npos) << c.status();
}

TEST(LoadConfigFileTest, JsonSyntaxErrorIsInvalidArgument) {
  std::string path = WriteTemp("bad.json", "{\"a\": ");
  absl::StatusOr<nlohmann::json> c = LoadConfigFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoadConfigFileTest, YamlScalarsBecomeTypedJson) {
  std::string path = WriteTemp("ok.yaml",
                               "port: 8080\nratio: 0.5\nenabled: true\nname: emu\nquoted: \"42\"\n"
                               "list: [a, b]\nnested: {k: v}\n");
  absl::StatusOr<nlohmann::json> c = LoadConfigFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)["port"], 8080);
  EXPECT_EQ((*c)["ratio"], 0.5);
  EXPECT_EQ((*c)["enabled"], true);
  EXPECT_EQ((*c)["name"], "emu");
  EXPECT_EQ((*c)["quoted"], "42");
  EXPECT_EQ((*c)["list"][1], "b");
  EXPECT_EQ((*c)["nested"]["k"], "v");
}

TEST(ParseConfigTextTest, SelfReferencingAliasIsAnErrorNotAStackOverflow) {
  absl::StatusOr<nlohmann::json> c = ParseConfigText("a: &x {b: *x}\n", "loop.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("recursive alias"), std::string::npos) << c.status();
}

TEST(ParseConfigTextTest, AliasBombIsAnError) {
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'h'; ++c) {
    std::string prev(1, static_cast<char>(c - 1));
    bomb += std::string(1, c) + ": &" + c + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev +
            ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n";
  }
  absl::StatusOr<nlohmann::json> c = ParseConfigText(bomb, "bomb.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("alias bomb"), std::string::npos) << c.status();
}

TEST(ParseConfigTextTest, NonScalarMapKeyIsAnError) {
  EXPECT_FALSE(ParseConfigText("? [a, b]\n: c\n", "k.yaml").ok());
}

TEST(ConfigReaderTest, ReadsTypedValuesAndLeavesDefaultsForAbsentKeys) {
  nlohmann::json j = {{"name", "a"}, {"count", 3}, {"on", true}, {"pools", {"emu", "gpu"}}};
  ConfigReader r(j, "cfg");
  std::string name, missing = "default";
  int64_t count = 0;
  bool on = false;
  std::vector<std::string> pools;
  r.String("name", &name);
  r.String("missing", &missing);
  r.Int("count", &count, 1, 10);
  r.Bool("on", &on);
  r.StringList("pools", &pools);
  EXPECT_TRUE(r.Finish().ok());
  EXPECT_EQ(name, "a");
  EXPECT_EQ(missing, "default");
  EXPECT_EQ(count, 3);
  EXPECT_TRUE(on);
  EXPECT_EQ(pools.size(), 2u);
}

TEST(ConfigReaderTest, BadTypeIsReportedWithFullKeyPath) {
  nlohmann::json j = {{"fabric", {{"provider", 7}}}};
  ConfigReader r(j, "agent.yaml");
  std::string provider;
  r.Object("fabric").String("provider", &provider);
  absl::Status s = r.Finish();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("agent.yaml: fabric.provider: expected string, got number"),
            std::string::npos)
      << s;
  EXPECT_TRUE(provider.empty());
}

TEST(ConfigReaderTest, UnknownKeysAreReportedAtEveryDepth) {
  nlohmann::json j = {{"fabirc", 1}, {"rules", {{{"pool", "emu"}, {"pol", "x"}}}}};
  ConfigReader r(j, "agent.yaml");
  for (ConfigReader& rule : r.ObjectList("rules")) {
    std::string pool;
    rule.String("pool", &pool);
  }
  absl::Status s = r.Finish();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("fabirc: unknown key"), std::string::npos) << s;
  EXPECT_NE(s.message().find("rules[0].pol: unknown key"), std::string::npos) << s;
}

TEST(ConfigReaderTest, RangeAndEnumViolationsAreErrors) {
  nlohmann::json j = {{"spares", -1}, {"provider", "carrier-pigeon"}};
  ConfigReader r(j, "cfg");
  int64_t spares = 0;
  std::string provider = "auto";
  r.Int("spares", &spares, 0, 100);
  r.Enum("provider", {"auto", "tcp;ofi_rxm"}, &provider);
  absl::Status s = r.Finish();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("spares: must be at least 0"), std::string::npos) << s;
  EXPECT_NE(s.message().find("provider: \"carrier-pigeon\" is not one of"), std::string::npos) << s;
  EXPECT_EQ(provider, "auto");
}

TEST(ConfigReaderTest, NonObjectTopLevelIsAnErrorNotACrash) {
  ConfigReader r(nlohmann::json::array({1, 2}), "cfg");
  std::string x;
  r.String("x", &x);
  EXPECT_FALSE(r.Finish().ok());
}

TEST(ConfigReaderTest, HugeUnsignedIntegerIsRangeError) {
  nlohmann::json j = nlohmann::json::parse("{\"n\": 18446744073709551615}");
  ConfigReader r(j, "cfg");
  int64_t n = 5;
  r.Int("n", &n);
  EXPECT_FALSE(r.Finish().ok());
  EXPECT_EQ(n, 5);
}

}  // namespace
}  // namespace rpci
